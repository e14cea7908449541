"""MLflow only: runs, stages' child runs, and logging models and reports."""
