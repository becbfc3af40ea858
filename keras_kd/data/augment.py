"""Batch augmentation stages: vectorized, seeded per batch, reproducible.

A stage maps a batch dict `{"x": inputs, "y": labels}` and a stateless seed
(an int64 tensor of shape `[2]`) to a new batch dict. Every random draw is a
function of that seed alone, so a batch's augmentation depends only on the
run's seed, the epoch and the step, never on `tf.data` thread timing. Stages
that mix pairs of examples (`MixUp`, `CutMix`) take labels as distributions
(`[batch, classes]`) and mix them with the same weights as the pixels.

Keras' own preprocessing layers are used wherever their randomness can be
driven by an explicit seed and their output matches the contract; the crop
and CutMix stages are written here, for the reasons given on each.
"""

import keras
import tensorflow as tf
from keras import layers

from keras_kd import seeds
from keras_kd.keras_compat import BatchSeed


def crop_padding(image_size):
    """Zero-padding of the random crop: 4 px at 32 px, scaled, at least 1."""
    return max(1, round(4 * image_size / 32))


class RandomCrop:
    """Zero-pads every spatial axis by `padding` and crops back at a random
    offset per example: a crop of an image, a shift of a signal in time.

    Written here because `keras.layers.RandomCrop` draws one crop window per
    batch; the standard augmentation draws one per image.
    """

    name = "crop"
    mixes_labels = False

    def __init__(self, padding):
        self.padding = int(padding)

    def __call__(self, batch, seed):
        inputs = batch["x"]
        sizes = inputs.shape[1:-1]  # (height, width) or (length,)
        pad = self.padding
        padded = tf.pad(inputs, [[0, 0]] + [[pad, pad]] * len(sizes) + [[0, 0]])
        offsets = tf.random.stateless_uniform(
            [tf.shape(inputs)[0], len(sizes)], seed, minval=0, maxval=2 * pad + 1,
            dtype=tf.int32,
        )
        cropped = padded
        for axis, size in enumerate(sizes):
            positions = offsets[:, axis:axis + 1] + tf.range(size)[None, :]
            cropped = tf.gather(cropped, positions, axis=axis + 1, batch_dims=1)
        return {**batch, "x": cropped}


class KerasLayers:
    """Applies Keras image preprocessing layers in order, seeded per batch.

    Args:
        name: the stage's name in a policy.
        stage_layers: Keras layers with `get_random_transformation` and
            `transform_images` (`keras.layers.RandomFlip`, `RandomRotation`,
            ...). They are applied in training mode and leave labels alone.
    """

    mixes_labels = False

    def __init__(self, name, stage_layers):
        self.name = name
        self.layers = tuple(stage_layers)

    def __call__(self, batch, seed):
        images = batch["x"]
        for index, layer in enumerate(self.layers):
            transformation = layer.get_random_transformation(
                images, training=True, seed=BatchSeed(seeds.fold_in(seed, index, bits=32))
            )
            images = layer.transform_images(images, transformation, training=True)
        return {**batch, "x": tf.cast(images, batch["x"].dtype)}


def _mixed_portion(batch_size, portion):
    """A `[batch]` boolean mask: True for the first `round(portion * batch)`."""
    count = tf.cast(tf.round(portion * tf.cast(batch_size, tf.float32)), tf.int32)
    return tf.range(batch_size) < count


class MixUp:
    """MixUp (Zhang et al., 2018) on the first `portion` of each batch.

    Each mixed example is `lam * x_i + (1 - lam) * x_j` with a partner `j`
    drawn by a random permutation of the batch and `lam ~ Beta(alpha,
    alpha)`; its label distribution is mixed with the same `lam`. Inputs of
    any rank (images, signals, feature vectors) mix alike.

    The draws are `keras.layers.MixUp`'s (a shuffle, then a Beta draw, from
    one seed), but the mixing is written here: the layer reads a rank-3
    batch as one image, so it cannot mix a batch of signals.
    """

    name = "mixup"
    mixes_labels = True

    def __init__(self, alpha=1.0, portion=1.0):
        self.alpha = float(alpha)
        self.portion = float(portion)

    def __call__(self, batch, seed):
        inputs, labels = batch["x"], batch["y"]
        batch_size = tf.shape(inputs)[0]
        draws = BatchSeed(seed)
        partner = keras.random.shuffle(tf.range(batch_size, dtype="int64"), seed=draws)
        lam = keras.random.beta((batch_size,), self.alpha, self.alpha, seed=draws)
        weight = _per_example(tf.cast(lam, inputs.dtype), inputs)
        mixed_inputs = weight * inputs + (1.0 - weight) * tf.gather(inputs, partner)
        lam = tf.cast(lam, labels.dtype)[:, None]
        mixed_labels = lam * labels + (1.0 - lam) * tf.gather(labels, partner)
        return _keep_portion(batch, mixed_inputs, mixed_labels, self.portion)


class CutMix:
    """CutMix (Yun et al., 2019) on the first `portion` of each batch.

    A box covering a `1 - lam` share of the input (`lam ~ Beta(alpha,
    alpha)`, box centre uniform, clipped at the border) is pasted from a
    partner drawn by a random permutation of the batch: a rectangle of an
    image, a segment of a signal. The label weight of each source is its
    exact share of the pasted positions.

    Written here because `keras.layers.CutMix` weights the labels by the
    box's continuous area rather than by the pixels it pastes: on 8x8 images
    the two differ by several points, and the hard loss would train on labels
    that do not describe the input. It also handles images only.
    """

    name = "cutmix"
    mixes_labels = True

    def __init__(self, alpha=1.0, portion=1.0):
        self.alpha = float(alpha)
        self.portion = float(portion)

    def __call__(self, batch, seed):
        inputs, labels = batch["x"], batch["y"]
        batch_size = tf.shape(inputs)[0]
        sizes = inputs.shape[1:-1]  # (height, width) or (length,)
        lam = keras.random.beta(
            (batch_size,), self.alpha, self.alpha, seed=BatchSeed(seeds.fold_in(seed, 0, bits=32))
        )
        # A box of a 1 - lam share: each side scaled by (1 - lam)^(1 / axes).
        cut = tf.sqrt(1.0 - lam) if len(sizes) == 2 else 1.0 - lam
        centres = tf.random.stateless_uniform([batch_size, 2], seeds.fold_in(seed, 1, bits=32))
        box = _box_mask(centres[:, 0], cut, sizes[0])
        if len(sizes) == 2:
            box = box[:, :, None] & _box_mask(centres[:, 1], cut, sizes[1])[:, None, :]
        partner = tf.argsort(
            tf.random.stateless_uniform([batch_size], seeds.fold_in(seed, 2, bits=32))
        )
        mixed_inputs = tf.where(box[..., None], tf.gather(inputs, partner), inputs)
        pasted = tf.reduce_mean(tf.cast(box, tf.float32), axis=list(range(1, box.shape.rank)))
        pasted = pasted[:, None]
        mixed_labels = (1.0 - pasted) * labels + pasted * tf.gather(labels, partner)
        return _keep_portion(batch, mixed_inputs, mixed_labels, self.portion)


class GaussianNoise:
    """Adds independent Gaussian noise of standard deviation `stddev` to every input value."""

    name = "noise"
    mixes_labels = False

    def __init__(self, stddev):
        self.stddev = float(stddev)

    def __call__(self, batch, seed):
        inputs = batch["x"]
        noise = tf.random.stateless_normal(tf.shape(inputs), seed, stddev=self.stddev,
                                           dtype=inputs.dtype)
        return {**batch, "x": inputs + noise}


class TokenMask:
    """Replaces each token id (not the padding, 0) with the out-of-vocabulary
    id, 1, with probability `rate`: dropout on the words of a text."""

    name = "token_mask"
    mixes_labels = False

    def __init__(self, rate):
        self.rate = float(rate)

    def __call__(self, batch, seed):
        tokens = batch["x"]
        masked = tf.random.stateless_uniform(tf.shape(tokens), seed) < self.rate
        masked &= tokens != 0
        return {**batch, "x": tf.where(masked, tf.ones_like(tokens), tokens)}


def _per_example(values, like):
    """`[batch]` values reshaped to broadcast over examples of `like`'s rank."""
    return tf.reshape(values, [-1] + [1] * (like.shape.rank - 1))


def _box_mask(centre, cut, size):
    """`[batch, size]`: True inside a box of length `cut * size` around `centre`."""
    half = tf.round(cut * size) / 2.0
    start = tf.clip_by_value(tf.round(centre * size - half), 0.0, size)
    end = tf.clip_by_value(tf.round(centre * size + half), 0.0, size)
    positions = tf.range(size, dtype=tf.float32)[None, :]
    return (positions >= start[:, None]) & (positions < end[:, None])


def _keep_portion(batch, mixed_inputs, mixed_labels, portion):
    inputs, labels = batch["x"], batch["y"]
    mixed = _mixed_portion(tf.shape(inputs)[0], portion)
    return {
        **batch,
        "x": tf.where(_per_example(mixed, inputs), tf.cast(mixed_inputs, inputs.dtype), inputs),
        "y": tf.where(mixed[:, None], tf.cast(mixed_labels, labels.dtype), labels),
    }


def ablation_stage(name, channels):
    """One of the study's augmentation-ablation stages, by name.

    `rotation` (up to 15 degrees), `hflip`, `vflip`, `perspective`,
    `grayscale` (p=0.5), `color_jitter` (brightness, contrast, saturation and
    hue), `blur` (Gaussian, 3x3). Images are in [0, 1].
    """
    value_range = (0.0, 1.0)
    options = {"dtype": "float32"}
    if name == "rotation":
        stage_layers = [layers.RandomRotation(15 / 360, fill_mode="constant", **options)]
    elif name == "hflip":
        stage_layers = [layers.RandomFlip("horizontal", **options)]
    elif name == "vflip":
        stage_layers = [layers.RandomFlip("vertical", **options)]
    elif name == "perspective":
        stage_layers = [layers.RandomPerspective(factor=1.0, scale=0.3, **options)]
    elif name == "grayscale":
        stage_layers = [layers.RandomGrayscale(factor=0.5, **options)]
    elif name == "color_jitter":
        # Not keras.layers.RandomColorJitter: it draws from its own seed
        # generator inside transform_images, so it cannot take a batch seed.
        # These are its four parts.
        stage_layers = [
            layers.RandomBrightness(0.2, value_range=value_range, **options),
            layers.RandomContrast(0.2, value_range=value_range, **options),
        ]
        if channels == 3:
            stage_layers += [
                layers.RandomSaturation(0.2, value_range=value_range, **options),
                layers.RandomHue(0.1, value_range=value_range, **options),
            ]
    elif name == "blur":
        stage_layers = [
            layers.RandomGaussianBlur(
                factor=1.0, kernel_size=3, sigma=1.0, value_range=value_range, **options
            )
        ]
    else:
        raise ValueError(f"Unknown augmentation stage {name!r}.")
    return KerasLayers(name, stage_layers)
