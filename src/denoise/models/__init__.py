"""One module per architecture (Keras 3), the registry that builds and loads them, precision."""
