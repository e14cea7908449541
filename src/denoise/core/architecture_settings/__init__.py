"""Each architecture's params.yaml settings (train.architectures.<name>): one Keras-free module
per architecture, named by its row in denoise.core.architectures."""
