"""The classifiers of the MNIST-1D paper (Greydanus and Kobak, 2024), in Keras.

Ported from the paper's reference code (`mnist1d/models.py`): the same
layers, widths, kernels, strides and padding, returning logits.
"""

import keras
from keras import layers


def _check_signal_shape(input_shape, name):
    if len(input_shape) != 2:
        raise ValueError(
            f"{name} needs signals of shape (length, channels); got "
            f"input_shape={tuple(input_shape)}."
        )


def mnist1d_cnn(input_shape, num_classes, channels=25, name="mnist1d_cnn"):
    """The paper's `ConvBase`: three ReLU 1-D convolutions (kernels 5, 3, 3,
    stride 2, `channels` filters), flattened into a linear layer.

    The reference pads each convolution by one sample on both sides
    (PyTorch's `padding=1`); here a `ZeroPadding1D(1)` before a `valid`
    convolution does the same, so a length-40 signal ends at length 5.
    """
    _check_signal_shape(input_shape, name)
    inputs = keras.Input(input_shape)
    x = inputs
    for index, kernel_size in enumerate((5, 3, 3)):
        x = layers.ZeroPadding1D(1)(x)
        x = layers.Conv1D(channels, kernel_size, strides=2, activation="relu",
                          name=f"conv{index + 1}")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def mnist1d_mlp(input_shape, num_classes, hidden_units=100, name="mnist1d_mlp"):
    """The paper's `MLP`: two ReLU layers of `hidden_units` over the flattened input."""
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for index in range(2):
        x = layers.Dense(hidden_units, activation="relu", name=f"dense{index + 1}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)

