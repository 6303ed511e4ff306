"""The inference server: FastAPI app, dynamic batcher, metrics, and the artifact it serves."""
