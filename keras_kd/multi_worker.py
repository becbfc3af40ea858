"""The one place keras_kd reaches into Keras' internals: `fit` under tf.distribute.

Keras 3's TensorFlow trainer (tested on keras 3.15, the range `setup.cfg`
pins; `tests/test_package.py` fails on any other version, so an upgrade is a
deliberate act) fails under `MultiWorkerMirroredStrategy` in two places
(https://github.com/keras-team/keras/issues/20585). `MultiWorkerFit` fixes
both, and only where they bite; under the default strategy (every fit on one
device) it defers to Keras untouched.
"""

import keras
import tensorflow as tf
# The predicate Keras' own step reduction branches on: the log fix below must
# apply exactly when Keras takes that branch.
from keras.src.backend.tensorflow.trainer import _collective_all_reduce_multi_worker

_DISTRIBUTED = (
    tf.distribute.MirroredStrategy,
    tf.distribute.MultiWorkerMirroredStrategy,
    tf.distribute.TPUStrategy,
)


class MultiWorkerFit:
    """Mixin that lets `fit`/`evaluate` run under `MultiWorkerMirroredStrategy`.

    1. Under a distribution strategy, Keras' symbolic build draws a first
       batch and averages it across replicas with a collective reduce, which
       fails on per-replica input under `MultiWorkerMirroredStrategy` (and,
       under `MirroredStrategy`, whenever that batch splits unevenly).
       Building only needs shapes and dtypes, so under a strategy this mixin
       builds from the dataset's element spec instead; no batch is drawn, so a
       fit under a strategy sees the same batches as one on one device.
    2. Each step's logs are reduced with `strategy.reduce("MEAN", v, axis=0)`,
       which fails on scalars. Under a multi-worker strategy only, this mixin
       hands Keras each scalar as a `[1]` vector, so the same reduction
       returns the scalar mean. The epoch's logs are read from the metrics
       themselves, whose state is summed across replicas, so they are exact.

    Put it first among the bases of a `keras.Model` subclass.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if isinstance(self.distribute_strategy, _DISTRIBUTED) and iterator is not None \
                and data_batch is None:
            # The element spec has the shapes and dtypes building needs, and
            # reading it draws no batch, so every epoch keeps all its batches.
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
            return super()._maybe_symbolic_build(data_batch=data_batch)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_train_function(self, force=False):
        if not _collective_all_reduce_multi_worker(self.distribute_strategy):
            return super().make_train_function(force=force)
        return self._vector_logs_function("train_function", self.train_step, force)

    def make_test_function(self, force=False):
        if not _collective_all_reduce_multi_worker(self.distribute_strategy):
            return super().make_test_function(force=force)
        return self._vector_logs_function("test_function", self.test_step, force)

    def _vector_logs_function(self, attribute, step, force):
        if getattr(self, attribute) is None or force:
            setattr(self, attribute, self._make_function(_vector_logs(step)))
        return getattr(self, attribute)


def _vector_logs(step):
    def vector_logs_step(data):
        return keras.tree.map_structure(
            lambda value: tf.reshape(value, [1]) if value.shape.rank == 0 else value,
            step(data),
        )

    return vector_logs_step
