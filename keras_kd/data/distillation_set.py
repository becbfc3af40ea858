"""`distillation_set`: the batches a `Distiller` is fit on, built by a policy.

Every random draw of an epoch (the split's shuffle, every augmentation, the
choice among cached views) is a stateless function of that epoch's seed,
derived from one `seed` (see `keras_kd.data.epochs`). Whole batches are
augmented in a parallel, deterministic map.

With `epochs=None`, one pass over the returned dataset is one epoch, and each
pass draws a fresh one: what `fit(dataset, epochs=N)` wants. (That per-pass
draw is a seeded `tf.data` op, so TensorFlow's global seed enters it: fix it
with `keras.utils.set_random_seed`, or leave it unset in both runs.) With
`epochs=N`, the dataset holds epochs `initial_epoch .. N - 1` back to back,
epoch `e` fixed by `(seed, e)` alone: fit it with `steps_per_epoch`, and a run
resumed at epoch `k`, or one under a distribution strategy, sees exactly the
batches of an uninterrupted run on one device.

Whatever the policy, the teacher's logits are for exactly the input the
student sees: either the `Distiller` calls the teacher on the batch's `x`, or
the logits were computed on that same stored input (a teacher-output cache).
"""

import math

import numpy as np
import tensorflow as tf

from keras_kd import digests
from keras_kd import seeds
from keras_kd.data import epochs as epochs_lib
from keras_kd.data import teacher_cache
from keras_kd.data.splits import input_kind
from keras_kd.data.policy import Policy
from keras_kd.data.synthetic import SyntheticSource

def distillation_set(
    split,
    num_classes,
    policy="identity",
    batch_size=64,
    seed=0,
    teacher=None,
    cache="auto",
    cached_views=0,
    cache_dir=None,
    synthetic=None,
    temperature=None,
    drop_remainder=False,
    epochs=None,
    initial_epoch=0,
):
    """Builds the distillation set of a training split under a policy.

    Batches are dicts in the `keras_kd.batch` format: `x`, `y` (class ids,
    or label distributions when the policy mixes labels), and, as needed,
    `teacher_logits` (cached), `hard_label_mask` (0 for synthetic examples)
    and `temperature` (per example, when synthetic examples have their own).

    Args:
        split: an unbatched `tf.data.Dataset` of `(x, y)` pairs with a known
            length (as `keras_kd.data.load` returns).
        num_classes: the class count.
        policy: a `keras_kd.data.Policy` or a spec such as `"crop_flip+mixup"`.
        batch_size: examples per batch, synthetic ones included.
        seed: the one seed of shuffling, augmentation and mixing.
        teacher: the teacher, needed only to cache its outputs.
        cache: teacher-output caching: `"auto"` (cache when the policy is
            static or `cached_views > 0`, in memory when it fits), `"memory"`,
            `"disk"` or `"off"` (the `Distiller` calls the teacher every step).
        cached_views: for a stochastic policy, the number of augmented copies
            of the training set to pre-sample and cache; each epoch then draws
            its examples from those copies, and the teacher is never called
            during training. 0 keeps the policy stochastic.
        cache_dir: root folder of disk caches (required for `"disk"`; with
            `"auto"`, the cache stays in memory when this is `None`).
        synthetic: a `keras_kd.data.SyntheticSource` (or a Keras generator
            model) for the `gan` or `ood` stage.
        temperature: the distiller's temperature, required when the policy
            gives synthetic examples their own `synthetic_temperature`.
        drop_remainder: whether to drop each epoch's last partial batch.
        epochs: `None` for one freshly drawn epoch per pass; an int for
            epochs `initial_epoch .. epochs - 1` in one pass, each fixed by
            `(seed, epoch)`; fit it with `steps_per_epoch` from
            `keras_kd.data.steps_per_epoch(dataset, epochs, initial_epoch)`.
        initial_epoch: the first epoch, with `epochs`.

    Returns:
        A `tf.data.Dataset` of batch dicts.

    Example:

    >>> data = keras_kd.data.load("digits")
    >>> train = keras_kd.data.distillation_set(
    ...     data.train, 10, "crop_flip+mixup", batch_size=32, seed=0)
    >>> batch = next(iter(train))
    >>> batch["x"].shape, batch["y"].shape
    (TensorShape([32, 8, 8, 1]), TensorShape([32, 10]))
    """
    builder = _Builder(
        split, num_classes, policy, batch_size, synthetic, temperature, drop_remainder
    )
    mode = _cache_mode(
        builder.policy, teacher, cache, cached_views, cache_dir,
        cached_bytes=cached_views * builder.example_bytes(),
    )
    def stream(make_epoch, steps=None):
        return builder.finish(make_epoch, seed, epochs, initial_epoch, steps)

    if mode is None:
        return stream(builder.augmented_epoch)
    # Only a disk cache needs a key; digesting the data reads the whole split.
    key_parts = None
    if mode == "disk":
        key_parts = {
            "teacher": digests.weights_digest(teacher),
            "data": digests.dataset_digest(split),
            "num_classes": num_classes,
        }
    if not builder.policy.stochastic:
        if key_parts is not None:
            key_parts["kind"] = "static_logits"
        logits = teacher_cache.static_logits(teacher, split, mode, cache_dir, key_parts)
        return stream(builder.cached_logits_epochs(logits))
    if key_parts is not None:
        key_parts.update(
            kind="cached_views",
            policy=builder.policy.describe(builder.input_shape),
            views=cached_views,
            seed=seed,
            batch_size=batch_size,
            synthetic=None if builder.synthetic is None else builder.synthetic.fingerprint,
            temperature=temperature,
            drop_remainder=drop_remainder,
            sampler="stateless-epochs",
        )
    views = teacher_cache.cached_views(
        teacher,
        lambda k: builder.augmented_epoch(
            seeds.epoch_seed(seeds.purpose_seed(seed, "view", k), 0)
        ),
        cached_views,
        mode,
        cache_dir,
        key_parts,
    )
    view_size = int(views[0].cardinality())
    return stream(
        lambda epoch_seed: builder.cached_views_epoch(views, view_size, epoch_seed),
        builder.steps_of(view_size, builder.batch_size),
    )


def check_cache_request(policy, cache, cached_views):
    """Raises a ValueError if `cache` and `cached_views` do not fit `policy`."""
    if cache not in teacher_cache.MODES:
        raise ValueError(f"cache must be one of {list(teacher_cache.MODES)}; got {cache!r}.")
    if isinstance(cached_views, bool) or not isinstance(cached_views, int) or cached_views < 0:
        raise ValueError(
            f"cached_views must be a non-negative integer; got {cached_views!r}."
        )
    if cached_views and not policy.stochastic:
        raise ValueError(
            f"cached_views={cached_views} pre-samples copies of a stochastic policy; "
            f"policy {policy.name!r} is static, and its teacher outputs are cached "
            "once per example without it."
        )
    if cache == "off" and cached_views:
        raise ValueError(f"cached_views={cached_views} needs a cache; got cache='off'.")
    if cache in ("memory", "disk") and policy.stochastic and not cached_views:
        raise ValueError(
            f"Cannot cache teacher outputs for the stochastic policy {policy.name!r}: "
            "every epoch draws new inputs. Pass cached_views=N to pre-sample N "
            "augmented copies of the training set, or use cache='off'."
        )


def _cache_mode(policy, teacher, cache, cached_views, cache_dir, cached_bytes):
    """None (no cache), "memory" or "disk"; raises on a bad request.

    `auto` keeps static logits on disk when there is a `cache_dir` (they are
    small, and reused across runs), and cached views in memory when they fit.
    """
    check_cache_request(policy, cache, cached_views)
    if cache == "off" or (policy.stochastic and not cached_views):
        return None
    if teacher is None:
        if cache == "auto" and not cached_views:
            return None
        raise ValueError(
            f"Caching teacher outputs (cache={cache!r}, cached_views={cached_views}) "
            "needs the teacher; got teacher=None."
        )
    if cache == "disk" and cache_dir is None:
        raise ValueError("cache='disk' needs a cache_dir; got None.")
    if cache != "auto":
        return cache
    if cache_dir is None:
        return "memory"
    if policy.stochastic:
        return teacher_cache.resolve_mode("auto", cached_bytes)
    return "disk"


# Indices of the draws of an epoch, folded into its seed.
_SHUFFLE, _AUGMENT, _CHOOSE_VIEW, _VIEW_SHUFFLE = range(4)


class _Builder:
    """Turns a split into epochs of batch dicts; one builder per distillation set."""

    def __init__(
        self, split, num_classes, policy, batch_size, synthetic, temperature, drop_remainder
    ):
        self.policy = policy if isinstance(policy, Policy) else Policy.parse(policy)
        x_spec, y_spec = split.element_spec
        self.input_shape = tuple(x_spec.shape)
        self.input_kind = input_kind(self.input_shape, x_spec.dtype.as_numpy_dtype)
        self.policy.validate(self.input_shape, self.input_kind)
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("num_classes", num_classes)
        self.split = split
        self.num_examples = int(split.cardinality())
        if self.num_examples < 0:
            raise ValueError(
                "The split's length is unknown; pass a dataset of known "
                "cardinality (apply tf.data.experimental.assert_cardinality)."
            )
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.drop_remainder = drop_remainder
        self.stages = self.policy.augmentation(self.input_shape, self.input_kind)
        self.synthetic = self._synthetic_source(synthetic)
        self.temperature = self._temperatures(temperature)
        self.num_synthetic = (
            round(self.policy.synthetic_fraction * batch_size) if self.synthetic else 0
        )
        self.real_batch_size = batch_size - self.num_synthetic
        self.steps = self._steps()
        self._split_batches = None
        if self.real_batch_size:
            # Made once, outside the epochs: a split of one shuffle block is
            # then assembled once and kept.
            self._split_batches = epochs_lib.shuffled_batches(
                split, self.num_examples, self.real_batch_size, drop_remainder
            )

    def _synthetic_source(self, synthetic):
        if not self.policy.uses_synthetic:
            if synthetic is not None:
                raise ValueError(
                    f"A synthetic source was given but policy {self.policy.name!r} "
                    "has no 'gan' or 'ood' stage to use it."
                )
            return None
        if synthetic is None:
            raise ValueError(
                f"Policy {self.policy.name!r} mixes in synthetic examples; pass "
                "synthetic=SyntheticSource.from_generator(generator)."
            )
        if not isinstance(synthetic, SyntheticSource):
            synthetic = SyntheticSource.from_generator(synthetic)
        if synthetic.input_shape != self.input_shape:
            raise ValueError(
                f"The synthetic source makes inputs of shape {synthetic.input_shape}, "
                f"but the split's inputs have shape {self.input_shape}."
            )
        return synthetic

    def _temperatures(self, temperature):
        """(real, synthetic) per-example temperatures, or None for the distiller's."""
        synthetic_temperature = self.policy.synthetic_temperature
        if not self.policy.uses_synthetic or synthetic_temperature is None:
            return None
        if temperature is None or not float(temperature) > 0:
            raise ValueError(
                f"synthetic_temperature={synthetic_temperature} needs the distiller's "
                f"temperature for real examples; got temperature={temperature!r}."
            )
        return float(temperature), float(synthetic_temperature)

    def _steps(self):
        if self.real_batch_size == 0:
            return math.ceil(self.num_examples / self.batch_size)
        return self.steps_of(self.num_examples, self.real_batch_size)

    def steps_of(self, num_examples, batch_size):
        if self.drop_remainder:
            return num_examples // batch_size
        return math.ceil(num_examples / batch_size)

    def example_bytes(self):
        """Bytes of one cached example (input, labels, logits, extras)."""
        label_bytes = 4 * (self.num_classes if self.policy.mixes_labels else 1)
        inputs = 4 * int(np.prod(self.input_shape))
        return inputs + label_bytes + 4 * self.num_classes + 8

    def finish(self, make_epoch, seed, epochs, initial_epoch, steps=None):
        """Lays out the epochs, each of known length, and prefetches."""
        steps = self.steps if steps is None else steps

        def epoch_of_known_length(epoch_seed):
            return make_epoch(epoch_seed).apply(tf.data.experimental.assert_cardinality(steps))

        batches = epochs_lib.stream(epoch_of_known_length, seed, initial_epoch, epochs)
        total = steps if epochs is None else steps * (epochs - initial_epoch)
        return epochs_lib.prefetched(
            batches.apply(tf.data.experimental.assert_cardinality(total)))

    def _batch_seeds(self, epoch_seed):
        """The `[2]` seed of each batch of an epoch, by its index."""
        augment_seed = seeds.fold_in(epoch_seed, _AUGMENT)
        return tf.data.Dataset.counter().map(
            lambda step: seeds.fold_in(augment_seed, step)
        )

    def augmented_epoch(self, epoch_seed):
        """One epoch of freshly augmented batches (the teacher is not called)."""
        if self.real_batch_size == 0:
            batch_seeds = self._batch_seeds(epoch_seed).take(self.steps)
            return batch_seeds.map(
                self._synthetic_only, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        batches = self._split_batches(seeds.fold_in(epoch_seed, _SHUFFLE))
        return tf.data.Dataset.zip(batches, self._batch_seeds(epoch_seed)).map(
            lambda pair, batch_seed: self._augment(*pair, batch_seed),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def _augment(self, x, y, seed):
        batch = {"x": x, "y": self._labels(y)}
        for index, stage in enumerate(self.stages):
            batch = stage(batch, seeds.fold_in(seed, index, bits=32))
        if self.synthetic is None:
            return batch
        synthetic = self._synthetic_batch(
            self.num_synthetic, seeds.fold_in(seed, len(self.stages), bits=32)
        )
        real = {**batch, **self._real_extras(tf.shape(x)[0])}
        return {key: tf.concat([real[key], synthetic[key]], axis=0) for key in synthetic}

    def _labels(self, y):
        if self.policy.mixes_labels:
            return tf.one_hot(y, self.num_classes, dtype=tf.float32)
        return y

    def _real_extras(self, count):
        extras = {"hard_label_mask": tf.ones([count], tf.float32)}
        if self.temperature is not None:
            extras["temperature"] = tf.fill([count], self.temperature[0])
        return extras

    def _synthetic_batch(self, count, seed):
        x = self.synthetic.sample(count, seed)
        label_shape = [count, self.num_classes] if self.policy.mixes_labels else [count]
        label_dtype = tf.float32 if self.policy.mixes_labels else self.split.element_spec[1].dtype
        batch = {
            "x": tf.ensure_shape(x, [count, *self.input_shape]),
            "y": tf.zeros(label_shape, label_dtype),
            "hard_label_mask": tf.zeros([count], tf.float32),
        }
        if self.temperature is not None:
            batch["temperature"] = tf.fill([count], self.temperature[1])
        return batch

    def _synthetic_only(self, seed):
        return self._synthetic_batch(self.batch_size, seed)

    def cached_logits_epochs(self, logits):
        """A function from an epoch's seed to that epoch, each example with its cached logits."""
        examples = tf.data.Dataset.zip(self.split, tf.data.Dataset.from_tensor_slices(logits))
        batches_of = epochs_lib.shuffled_batches(
            examples, self.num_examples, self.batch_size, self.drop_remainder
        )

        def epoch(epoch_seed):
            batches = batches_of(seeds.fold_in(epoch_seed, _SHUFFLE))
            return batches.map(
                lambda pair, teacher_logits: {
                    "x": pair[0],
                    "y": pair[1],
                    "teacher_logits": teacher_logits,
                },
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )

        return epoch

    def cached_views_epoch(self, views, view_size, epoch_seed):
        """One epoch drawn, example by example, from the cached augmented copies.

        An epoch takes as many examples as one view holds, each from a view
        chosen at random, so epochs keep their length and the teacher is
        never called.
        """
        shuffled = [
            epochs_lib.shuffled(
                view, view_size, seeds.fold_in(epoch_seed, _VIEW_SHUFFLE + k)
            )
            for k, view in enumerate(views)
        ]
        choice_seed = seeds.fold_in(epoch_seed, _CHOOSE_VIEW)
        choices = tf.data.Dataset.range(view_size).map(
            lambda index: tf.random.stateless_uniform(
                [], seeds.fold_in(choice_seed, index), 0, len(views), tf.int64
            )
        )
        # Every view holds a whole epoch, so none runs out before `take`.
        examples = tf.data.Dataset.choose_from_datasets(
            shuffled, choices, stop_on_empty_dataset=False
        ).take(view_size)
        return examples.batch(self.batch_size, drop_remainder=self.drop_remainder)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
