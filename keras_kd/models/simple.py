"""Small classifiers: a VGG-style CNN (images or signals) and an MLP (any input)."""

import keras
from keras import layers

from keras_kd.models.resnet import spatial_layers


def cnn(input_shape, num_classes, width=32, name="cnn"):
    """Two conv-conv-pool stages (width, 2 * width filters), then a linear head.

    2-D on images `(height, width, channels)`, 1-D on signals `(length, channels)`.
    """
    conv, pool, global_pool = spatial_layers(input_shape, name)
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, filters in enumerate((width, 2 * width)):
        for index in range(2):
            x = conv(
                filters, 3, padding="same", activation="relu",
                name=f"stage{stage + 1}_conv{index + 1}",
            )(x)
        if min(x.shape[1:-1]) >= 2:
            x = pool(name=f"stage{stage + 1}_pool")(x)
    x = global_pool()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def mlp(input_shape, num_classes, hidden_units=(256, 256), name="mlp"):
    """A ReLU multilayer perceptron over the flattened input."""
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs) if len(input_shape) > 1 else inputs
    for index, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense{index + 1}")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
