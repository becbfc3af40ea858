"""`distillation_set`: the batches a `Distiller` is fit on, built by a policy.

One pass over the returned dataset is one epoch. Each pass reshuffles the
split and redraws every augmentation; all of it derives from one `seed`, so
two runs with the same seed see bitwise-identical batches, epoch by epoch.
(As with any seeded `tf.data` op, TensorFlow's global seed enters the
shuffles too: fix it with `keras.utils.set_random_seed` before building the
set, or leave it unset in both runs.)

Each pass is a new epoch, and `keras.Model.fit` may open more iterators than
it runs epochs (it opens the next one at each epoch's end, and under a
distribution strategy one more to build the model). The epochs a fit sees
are therefore fixed by the seed and the setup, but a fit on one device and
one under `MirroredStrategy` draw different (equally random) epochs.

Randomness comes from two reshuffling `tf.data` sources: the split's
shuffle, and a stream of per-batch seeds (`Dataset.random`), both redrawn on
each pass. Every augmentation draw is a stateless function of its batch's
seed, so augmenting whole batches in a parallel map stays deterministic.

Whatever the policy, the teacher's logits are for exactly the input the
student sees: either the `Distiller` calls the teacher on the batch's `x`, or
the logits were computed on that same stored input (a teacher-output cache).
"""

import math

import numpy as np
import tensorflow as tf

from keras_kd.data import augment
from keras_kd.data import fingerprint
from keras_kd.data import teacher_cache
from keras_kd.data.policy import Policy
from keras_kd.data.synthetic import SyntheticSource

_SHUFFLE_BUFFER = 50_000


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
            model) for the `gan` stage.
        temperature: the distiller's temperature, required when the policy
            gives synthetic examples their own `synthetic_temperature`.
        drop_remainder: whether to drop each epoch's last partial batch.

    Returns:
        A `tf.data.Dataset` of batch dicts, one epoch per pass.

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
    if mode is None:
        return builder.finish(builder.augmented_batches(seed))
    # Only a disk cache needs a key; digesting the data reads the whole split.
    key_parts = None
    if mode == "disk":
        key_parts = {
            "teacher": fingerprint.weights_fingerprint(teacher),
            "data": fingerprint.dataset_fingerprint(split),
            "num_classes": num_classes,
        }
    if not builder.policy.stochastic:
        if key_parts is not None:
            key_parts["kind"] = "static_logits"
        logits = teacher_cache.static_logits(teacher, split, mode, cache_dir, key_parts)
        return builder.finish(builder.cached_logits_batches(logits, seed))
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
        )
    views = teacher_cache.cached_views(
        teacher,
        lambda k: builder.augmented_batches(_sub_seed(seed, "view", k)),
        cached_views,
        mode,
        cache_dir,
        key_parts,
    )
    return builder.finish(*builder.cached_views_batches(views, seed))


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


def _sub_seed(seed, purpose, index=0):
    """An int seed for one purpose ("shuffle", "view", ...) derived from `seed`."""
    words = [seed, index, *purpose.encode()]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


class _Builder:
    """Turns a split into epochs of batch dicts; one builder per distillation set."""

    def __init__(
        self, split, num_classes, policy, batch_size, synthetic, temperature, drop_remainder
    ):
        self.policy = policy if isinstance(policy, Policy) else Policy.parse(policy)
        x_spec, y_spec = split.element_spec
        self.input_shape = tuple(x_spec.shape)
        self.policy.validate(self.input_shape)
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
        self.stages = self.policy.augmentation(self.input_shape)
        self.synthetic = self._synthetic_source(synthetic)
        self.temperature = self._temperatures(temperature)
        self.num_synthetic = (
            round(self.policy.synthetic_fraction * batch_size) if self.synthetic else 0
        )
        self.real_batch_size = batch_size - self.num_synthetic
        self.steps = self._steps()

    def _synthetic_source(self, synthetic):
        if not self.policy.uses_synthetic:
            if synthetic is not None:
                raise ValueError(
                    f"A synthetic source was given but policy {self.policy.name!r} "
                    "has no 'gan' stage to use it."
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
        if self.drop_remainder:
            return self.num_examples // self.real_batch_size
        return math.ceil(self.num_examples / self.real_batch_size)

    def example_bytes(self):
        """Bytes of one cached example (input, labels, logits, extras)."""
        label_bytes = 4 * (self.num_classes if self.policy.mixes_labels else 1)
        inputs = 4 * int(np.prod(self.input_shape))
        return inputs + label_bytes + 4 * self.num_classes + 8

    def finish(self, batches, steps=None):
        """Declares the epoch's length and prefetches."""
        steps = self.steps if steps is None else steps
        batches = batches.apply(tf.data.experimental.assert_cardinality(steps))
        return batches.prefetch(tf.data.AUTOTUNE)

    def _shuffled(self, examples, seed, size):
        return examples.shuffle(
            min(size, _SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True
        )

    def _with_batch_seeds(self, batches, seed):
        """Zips batches with per-batch seeds `[draw, step]`, redrawn each pass."""
        draws = tf.data.Dataset.random(
            seed=_sub_seed(seed, "augment"), rerandomize_each_iteration=True
        )
        seeds = tf.data.Dataset.zip(draws, tf.data.Dataset.counter()).map(
            lambda draw, step: tf.stack([draw, step])
        )
        return tf.data.Dataset.zip(batches, seeds)

    def augmented_batches(self, seed):
        """Epochs of freshly augmented batches (the teacher is not called)."""
        if self.real_batch_size == 0:
            steps = self._with_batch_seeds(tf.data.Dataset.range(self.steps), seed)
            return steps.map(
                lambda _, batch_seed: self._synthetic_only(batch_seed),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        shuffled = self._shuffled(self.split, _sub_seed(seed, "shuffle"), self.num_examples)
        batches = shuffled.batch(self.real_batch_size, drop_remainder=self.drop_remainder)
        return self._with_batch_seeds(batches, seed).map(
            lambda pair, batch_seed: self._augment(*pair, batch_seed),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def _augment(self, x, y, seed):
        batch = {"x": x, "y": self._labels(y)}
        for index, stage in enumerate(self.stages):
            batch = stage(batch, augment.stage_seed(seed, index))
        if self.synthetic is None:
            return batch
        synthetic = self._synthetic_batch(
            self.num_synthetic, augment.stage_seed(seed, len(self.stages))
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

    def cached_logits_batches(self, logits, seed):
        """Epochs of the split with each example's cached teacher logits."""
        examples = tf.data.Dataset.zip(self.split, tf.data.Dataset.from_tensor_slices(logits))
        shuffled = self._shuffled(examples, _sub_seed(seed, "shuffle"), self.num_examples)
        batches = shuffled.batch(self.batch_size, drop_remainder=self.drop_remainder)
        return batches.map(
            lambda pair, teacher_logits: {
                "x": pair[0],
                "y": pair[1],
                "teacher_logits": teacher_logits,
            },
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def cached_views_batches(self, views, seed):
        """Epochs drawn, example by example, from the cached augmented copies.

        Each epoch takes as many examples as one view holds, each from a view
        chosen at random, so epochs keep their length and the teacher is
        never called. Returns `(batches, steps)`.
        """
        view_size = int(views[0].cardinality())
        steps = view_size // self.batch_size
        if not self.drop_remainder:
            steps = math.ceil(view_size / self.batch_size)
        shuffled = [
            self._shuffled(view, _sub_seed(seed, "shuffle", k), view_size)
            for k, view in enumerate(views)
        ]
        choices = tf.data.Dataset.random(
            seed=_sub_seed(seed, "choose_view"), rerandomize_each_iteration=True
        ).map(lambda draw: draw % len(views))
        # Every view holds a whole epoch, so none runs out before `take`.
        examples = tf.data.Dataset.choose_from_datasets(
            shuffled, choices, stop_on_empty_dataset=False
        ).take(view_size)
        return examples.batch(self.batch_size, drop_remainder=self.drop_remainder), steps


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
