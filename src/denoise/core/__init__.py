"""Pure code with no Keras and no MLflow: config, errors, metrics, noise models, files."""
