"""CIFAR-style residual networks (He et al., 2016, section 4.2)."""

import keras
from keras import layers


def _check_image_shape(input_shape, name):
    if len(input_shape) != 3:
        raise ValueError(
            f"{name} needs image inputs of shape (height, width, channels); "
            f"got input_shape={input_shape}."
        )


def _conv_bn(x, filters, strides=1, kernel_size=3, name=None):
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    # Synchronized statistics make a step under N replicas match one device.
    return layers.BatchNormalization(synchronized=True, name=f"{name}_bn")(x)


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = layers.ReLU()(_conv_bn(x, filters, strides, name=f"{name}_1"))
    y = _conv_bn(y, filters, name=f"{name}_2")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, strides, kernel_size=1, name=f"{name}_proj")
    return layers.ReLU()(layers.Add()([y, shortcut]))


def cifar_resnet(depth, input_shape, num_classes, name=None):
    """A ResNet of `depth = 6n + 2` layers: 3 stages of n basic blocks.

    Stages have 16, 32 and 64 filters; the 2nd and 3rd start with stride 2.
    Shortcuts that change shape are 1x1 convolutions (option B).
    """
    name = name or f"resnet{depth}"
    _check_image_shape(input_shape, name)
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = layers.ReLU()(_conv_bn(inputs, 16, name="stem"))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
