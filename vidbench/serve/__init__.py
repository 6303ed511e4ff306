"""Production from a measured run: the served artifact, the feature store, the vector index, distributed feature
extraction, and the inference server (FastAPI app, dynamic batcher, metrics)."""
