"""The patch stream, noise drawn in the training step, and the training loop."""
