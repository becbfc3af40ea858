"""Small classifiers: a VGG-style CNN and an MLP."""

import keras
from keras import layers

from keras_kd.models.resnet import _check_image_shape


def cnn(input_shape, num_classes, width=32, name="cnn"):
    """Two conv-conv-pool stages (width, 2 * width filters), then a linear head."""
    _check_image_shape(input_shape, name)
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, filters in enumerate((width, 2 * width)):
        for conv in range(2):
            x = layers.Conv2D(
                filters, 3, padding="same", activation="relu",
                name=f"stage{stage + 1}_conv{conv + 1}",
            )(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = layers.MaxPooling2D(name=f"stage{stage + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D()(x)
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
