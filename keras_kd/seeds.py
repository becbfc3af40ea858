"""Seed derivation: every seed of a run comes from its one integer seed.

Two kinds of seed flow through keras_kd:

- integer seeds, for `keras.utils.set_random_seed` and the integer seeds of
  pipelines: `derived_seed(seed, *keys)` names a part of a run ("member", k;
  "student"; "control"), and `purpose_seed(seed, purpose, index)` one kind of
  draw of a distillation set ("view", k);
- `[2]` int64 seed tensors, for TensorFlow's stateless random ops inside
  `tf.data` maps: `epoch_seed(seed, epoch)`, then `fold_in(seed, index)` for
  each batch, stage or draw below it.

Each function is the one recipe for its kind; changing one changes the draws
of every trained member, cache and result, so `tests/test_keys.py` pins their
values.

Example:

>>> derived_seed(0, "member", 1) == derived_seed(0, "member", 1)
True
>>> fold_in(epoch_seed(0, 1), 2).shape
TensorShape([2])
"""

import hashlib

import numpy as np
import tensorflow as tf


def derived_seed(seed, *keys):
    """An integer seed for one part of a run (a teacher member, say) derived from `seed`.

    Args:
        seed: the run's integer seed.
        *keys: what names the part (strings and integers: `"member", 1`).

    Returns:
        An int in `[0, 2**31 - 1)`.
    """
    entropy = [seed] + [int(hashlib.sha256(str(k).encode()).hexdigest()[:8], 16) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


def purpose_seed(seed, purpose, index=0):
    """An integer seed for one kind of draw (`"view"`, k) of a pipeline seeded by `seed`.

    Returns:
        An int in `[0, 2**32)`.
    """
    words = [seed, index, *purpose.encode()]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def epoch_seed(seed, epoch):
    """The `[2]` int64 seed of epoch `epoch` (an int or a tensor) of a run seeded by `seed`."""
    base = tf.constant([seed % (2**63), 0], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))


def fold_in(seed, index, bits=64):
    """A `[2]` seed derived from a `[2]` seed and an integer index.

    Args:
        seed: a `[2]` seed tensor.
        index: a Python int or an integer tensor.
        bits: the width the index is folded in as, 64 or 32; the two give
            different seeds. The stages of a distillation set and Keras'
            random layers under them draw with 32 (`keras_kd.data.augment`),
            the rest with 64.
    """
    if bits not in (32, 64):
        raise ValueError(f"bits must be 32 or 64; got {bits!r}.")
    dtype = tf.int64 if bits == 64 else tf.int32
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(index, dtype))
