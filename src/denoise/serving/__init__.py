"""Tiled inference, the MLflow pyfunc model, loading models, and `denoise apply`."""
