"""Generator and discriminator networks for small images (8x8 to 32x32) and signals.

Both are DCGAN-shaped: the generator upsamples a latent vector with
transposed convolutions to images in [0, 1] (the range of
`keras_kd.data.load`) or to unbounded signals (standardized, as MNIST-1D
is); the discriminator downsamples with strided convolutions wrapped in
`keras.layers.SpectralNormalization`, as in SN-GAN (Miyato et al., 2018),
and returns one unbounded score per example. Images `(height, width,
channels)` get 2-D layers, signals `(length, channels)` 1-D ones.
"""

import keras
import numpy as np
from keras import layers


def upsampling_steps(image_shape, most=3):
    """How many 2x resolution steps the networks take for `image_shape`.

    The largest k <= `most` with both sides divisible by 2^k and at least 2
    pixels left at the base: 8x8 -> 2 (from 2x2), 28x28 -> 2 (7x7), 32x32 -> 3
    (4x4).

    >>> upsampling_steps((8, 8, 1)), upsampling_steps((28, 28, 1)), upsampling_steps((40, 1))
    (2, 2, 3)
    """
    _check_shape(image_shape)
    steps = 0
    while steps < most and all(
        side % 2 ** (steps + 1) == 0 and side // 2 ** (steps + 1) >= 2
        for side in image_shape[:-1]
    ):
        steps += 1
    return steps


def make_generator(image_shape, latent_dim=64, width=128, name="generator"):
    """A generator from `[batch, latent_dim]` normal latents to images in [0, 1]
    (or to unbounded signals).

    Args:
        image_shape: `(height, width, channels)` of the images to make, or
            `(length, channels)` of the signals.
        latent_dim: size of the latent vector.
        width: channels at the base resolution, halved at each upsampling.
        name: the model's name.

    Example:

    >>> generator = make_generator((8, 8, 1), latent_dim=16)
    >>> generator(np.zeros((2, 16), "float32")).shape
    TensorShape([2, 8, 8, 1])
    """
    steps = upsampling_steps(image_shape)
    signals = len(image_shape) == 2
    base = [side // 2**steps for side in image_shape[:-1]]
    conv, conv_transpose = ((layers.Conv1D, layers.Conv1DTranspose) if signals
                            else (layers.Conv2D, layers.Conv2DTranspose))
    latents = keras.Input((latent_dim,), name="latents")
    x = layers.Dense(int(np.prod(base)) * width, use_bias=False)(latents)
    # Synchronized statistics: under N replicas (or workers) the batch is the
    # global one, and every replica keeps the same moving statistics.
    x = layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))
    x = layers.Reshape((*base, width))(x)
    for step in range(steps):
        filters = max(width // 2 ** (step + 1), 16)
        x = conv_transpose(filters, 4, strides=2, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization(synchronized=True)(x))
    # Images are in [0, 1]; standardized signals are not bounded.
    outputs = conv(image_shape[-1], 3, padding="same",
                   activation=None if signals else "sigmoid")(x)
    return keras.Model(latents, outputs, name=name)


def make_discriminator(image_shape, width=64, name="discriminator"):
    """A spectrally normalized discriminator: images -> `[batch, 1]` scores.

    Under the `mixed_float16` policy it computes in float32: spectral
    normalization's power iteration overflows float16 (bfloat16, with
    float32's range, is kept).

    Example:

    >>> discriminator = make_discriminator((8, 8, 1))
    >>> discriminator(np.zeros((2, 8, 8, 1), "float32")).shape
    TensorShape([2, 1])
    """
    steps = upsampling_steps(image_shape)
    rank = len(image_shape) - 1
    dtype = None
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        dtype = "float32"
    images = keras.Input(image_shape, name="images")
    x = _sn_conv(rank, width, 3, 1, dtype)(images)
    x = layers.LeakyReLU(0.1, dtype=dtype)(x)
    for step in range(steps):
        x = _sn_conv(rank, width * 2 ** min(step, 2), 4, 2, dtype)(x)
        x = layers.LeakyReLU(0.1, dtype=dtype)(x)
    x = layers.Flatten(dtype=dtype)(x)
    scores = layers.SpectralNormalization(layers.Dense(1, dtype=dtype), dtype=dtype)(x)
    return keras.Model(images, scores, name=name)


def _sn_conv(rank, filters, kernel_size, strides, dtype=None):
    # No bias: with one, TensorFlow's graph optimizer tries to fuse the
    # convolution, its BiasAdd and the LeakyReLU around SpectralNormalization's
    # kernel update, fails, and logs an error at every trace.
    conv = layers.Conv1D if rank == 1 else layers.Conv2D
    return layers.SpectralNormalization(
        conv(filters, kernel_size, strides=strides, padding="same", use_bias=False,
             dtype=dtype),
        dtype=dtype,
    )


def _check_shape(shape):
    shape = tuple(shape)
    if len(shape) not in (2, 3) or min(shape) < 1 or min(shape[:-1]) < 4:
        raise ValueError(
            "The GAN makes images of shape (height, width, channels), at least "
            f"4x4, or signals of shape (length, channels), at least 4 long; got {shape!r}."
        )
