"""One module per architecture (Keras 3), `build` that builds and loads them, precision."""
