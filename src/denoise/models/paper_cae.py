"""The paper's convolutional autoencoder (Ghafar & Sattar 2021): 29,507 parameters at 200x200x3."""

from __future__ import annotations

import keras
from keras import layers

from denoise.core.train_config import Train, Variant


def paper_cae(channels: int = 3, input_size: int | None = None) -> keras.Model:
    """The convolutional autoencoder of Ghafar & Sattar (2021), layer for layer.

    Conv2D 32 3x3 ReLU + MaxPool 2, twice; Conv2DTranspose 32 3x3 stride 2 ReLU, twice;
    Conv2D 3x3 sigmoid. 29,507 parameters for RGB. Height and width must be multiples of 4;
    input_size fixes them (for a summary with shapes, the paper's Fig. 8), None leaves them free.
    """
    noisy = keras.Input(shape=(input_size, input_size, channels), name="noisy")
    features = layers.Conv2D(32, 3, activation="relu", padding="same", name="encode_1")(noisy)
    features = layers.MaxPooling2D(2, padding="same", name="pool_1")(features)
    features = layers.Conv2D(32, 3, activation="relu", padding="same", name="encode_2")(features)
    features = layers.MaxPooling2D(2, padding="same", name="pool_2")(features)
    features = layers.Conv2DTranspose(
        32, 3, strides=2, activation="relu", padding="same", name="decode_1"
    )(features)
    features = layers.Conv2DTranspose(
        32, 3, strides=2, activation="relu", padding="same", name="decode_2"
    )(features)
    denoised = layers.Conv2D(
        channels, 3, activation="sigmoid", padding="same", name="denoised", dtype="float32"
    )(features)
    return keras.Model(noisy, denoised, name="paper_cae")


def build(train: Train, spec: Variant, input_size: int | None = None) -> keras.Model:
    """The builder core.architectures names: the paper's model has no settings."""
    return paper_cae(input_size=input_size)


def keeps_float32(layer: keras.layers.Layer) -> bool:
    """Whether the builder makes this layer float32 under any dtype policy (the output):
    models.precision asks, to compute the rest in bfloat16."""
    return layer.name == "denoised"
