"""The few places keras_kd leans on Keras internals, fenced in one module.

Keras 3 has no public API for these three; each is written against the
Keras pinned in `setup.cfg`, and `tests/test_package.py` fails on another
Keras version so that an upgrade re-examines them (the multi-worker fix,
the other private use, lives in `keras_kd.multi_worker`):

- `start_fit_at`: what `keras.callbacks.BackupAndRestore` sets so that
  `fit` starts after the restored epochs;
- `compile_metrics`: the metrics a model was compiled with, which a custom
  `train_step` updates and lists itself;
- `BatchSeed`: a `keras.random.SeedGenerator` driven by one stateless seed
  tensor, so Keras' random layers draw reproducibly inside a `tf.data` map.
"""

import keras

from keras_kd import seeds


def start_fit_at(model, epoch):
    """Makes the running `fit` of `model` start at `epoch` (from `on_train_begin`)."""
    model._initial_epoch = epoch


def compile_metrics(model):
    """The `CompileMetrics` of a compiled model's `metrics=`, or `None`."""
    return getattr(model, "_compile_metrics", None)


class BatchSeed(keras.random.SeedGenerator):
    """A seed generator that derives every draw from one batch seed.

    Keras' random layers draw from a `SeedGenerator`, whose state is a
    variable; in a parallel `tf.data` map its updates race, so the draws would
    depend on thread timing. This one hands out `fold_in(seed, n)` for the
    n-th draw instead, and owns no variable (hence no `super().__init__`).

    No public Keras API fits: `keras.random` takes an int, `None` or a
    `SeedGenerator` as a seed (not a seed tensor), and `SeedGenerator`'s own
    constructor makes a variable, which a `tf.data` map function cannot. It
    overrides only `next`, the one method Keras' random ops call.
    """

    def __init__(self, seed):  # pylint: disable=super-init-not-called
        self._seed = seed
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return seeds.fold_in(self._seed, self._draws, bits=32)
