"""CIFAR-style residual networks (He et al., 2016, section 4.2), for images and signals.

The same network is built with 2-D layers for images `(height, width,
channels)` and with 1-D layers for signals `(length, channels)`.
"""

import keras
from keras import layers

# Per input rank: (convolution, pooling, global pooling) layer classes.
_LAYERS = {
    2: (layers.Conv1D, layers.MaxPooling1D, layers.GlobalAveragePooling1D),
    3: (layers.Conv2D, layers.MaxPooling2D, layers.GlobalAveragePooling2D),
}


def spatial_layers(input_shape, name):
    """`(Conv, MaxPooling, GlobalAveragePooling)` layer classes for the input's rank.

    Raises a ValueError naming `name` and the shape for inputs that are
    neither signals `(length, channels)` nor images `(height, width, channels)`.
    """
    if len(input_shape) not in _LAYERS:
        raise ValueError(
            f"{name} needs images of shape (height, width, channels) or signals of "
            f"shape (length, channels); got input_shape={tuple(input_shape)}."
        )
    return _LAYERS[len(input_shape)]


def _normalization(kind, name):
    if kind == "layer":
        # LayerNorm of a convolutional layer: over all its positions and channels
        # at once (GroupNorm with one group, Wu & He 2018), a scale and offset per
        # channel. Normalizing each position's channels alone would erase the
        # local amplitude a signal's shape is made of.
        return layers.GroupNormalization(groups=1, name=f"{name}_ln")
    # Synchronized statistics make a step under N replicas match one device.
    return layers.BatchNormalization(synchronized=True, name=f"{name}_bn")


def _conv_bn(conv, x, filters, strides=1, kernel_size=3, name=None, normalization="batch"):
    x = conv(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    return _normalization(normalization, name)(x)


def _basic_block(conv, x, filters, strides, name, normalization):
    shortcut = x
    y = layers.ReLU()(_conv_bn(conv, x, filters, strides, name=f"{name}_1",
                               normalization=normalization))
    y = _conv_bn(conv, y, filters, name=f"{name}_2", normalization=normalization)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(conv, x, filters, strides, kernel_size=1, name=f"{name}_proj",
                            normalization=normalization)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def cifar_resnet(depth, input_shape, num_classes, name=None, width=1, normalization="batch"):
    """A ResNet of `depth = 6n + 2` layers: 3 stages of n basic blocks.

    Stages have 16, 32 and 64 filters (times `width`); the 2nd and 3rd start
    with stride 2. Shortcuts that change shape are 1x1 convolutions (option
    B). On signals `(length, channels)` every convolution is 1-D (kernel 3,
    or 1). `normalization` is `"batch"` (BatchNorm) or `"layer"` (LayerNorm
    over each layer's positions and channels, no batch statistics).
    """
    if normalization not in ("batch", "layer"):
        raise ValueError(f"normalization must be 'batch' or 'layer'; got {normalization!r}.")
    name = name or f"resnet{depth}"
    conv, _, global_pool = spatial_layers(input_shape, name)
    blocks_per_stage = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = layers.ReLU()(_conv_bn(conv, inputs, 16 * width, name="stem",
                               normalization=normalization))
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(conv, x, filters * width, strides,
                             name=f"stage{stage + 1}_block{block + 1}",
                             normalization=normalization)
    x = global_pool()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
