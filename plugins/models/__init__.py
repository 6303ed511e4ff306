"""Model plugins, one module per architecture."""
