"""Video decoding, frame extraction and manifests, the evaluation sets, the sample data."""
