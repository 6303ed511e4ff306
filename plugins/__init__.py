"""Built-in vidbench plugins: models, datasets and optimizations, one module each."""
