"""Callbacks: atomic backups, a stop on NaN, and fidelity logged each epoch."""

import dataclasses
import math
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_kd import batch as batch_lib
from keras_kd import export
from keras_kd import fidelity as fidelity_lib

_BACKUP_NAME = re.compile(r"^epoch-(\d+)\.(weights\.h5|state\.npz)$")


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up training state at each epoch's end; a rerun resumes from it.

    Like `keras.callbacks.BackupAndRestore`, but each backup is written to a
    temporary file and renamed into place, named by the epochs it completes
    (`epoch-0003.weights.h5`), so a process killed mid-write leaves the
    previous backup intact and never a partial one that looks finished.
    The weights include the optimizer's state (its step count, so also the
    learning-rate schedule's position).

    A model that defines `backup_variables()` (the `Distiller` does: its
    student's and optimizer's variables, not the frozen teacher's) is backed
    up as exactly those variables (`epoch-0003.state.npz`); any other model
    with `save_weights`.

    `fit` resumes after the last backed-up epoch. Data must be the same for
    the resumed epochs: `keras_kd.data` pipelines built with `epochs=N` and
    `initial_epoch=BackupAndRestore.completed_epochs(dir)` are.

    Args:
        backup_dir: a folder used by this training run alone.
        delete_on_end: remove the backup when `fit` ends normally. Keep it
            (`False`) when later work depends on this fit, so a rerun after a
            crash in that work does not train again.

    Example:

    >>> import keras, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> folder = tempfile.mkdtemp()
    >>> backup = keras_kd.callbacks.BackupAndRestore(folder, delete_on_end=False)
    >>> _ = model.fit(np.ones((8, 4)), np.ones(8), epochs=2, callbacks=[backup], verbose=0)
    >>> keras_kd.callbacks.BackupAndRestore.completed_epochs(folder)
    2
    """

    def __init__(self, backup_dir, delete_on_end=True):
        super().__init__()
        if not backup_dir:
            raise ValueError(f"backup_dir must be a folder path; got {backup_dir!r}.")
        self.backup_dir = os.fspath(backup_dir)
        self.delete_on_end = delete_on_end
        self.seconds = 0.0  # spent writing backups, for a job's timing

    @staticmethod
    def completed_epochs(backup_dir):
        """The epochs the last backup in `backup_dir` completed (0 if none)."""
        return max(_backups(backup_dir), default=0)

    def on_train_begin(self, logs=None):
        epochs = self.completed_epochs(self.backup_dir)
        if not epochs:
            return
        if not self.model.built:
            raise ValueError(
                f"Restoring from {self.backup_dir!r} needs a built model; build it "
                "(call it on a batch) before fit."
            )
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        path = _backup_path(self.backup_dir, epochs)
        if path.endswith(".npz"):
            _restore_variables(self.model.backup_variables(), path)
        else:
            self.model.load_weights(path)
        # What keras.callbacks.BackupAndRestore sets: fit starts at this epoch.
        self.model._initial_epoch = epochs

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        variables = getattr(self.model, "backup_variables", None)
        path = _backup_path(self.backup_dir, epoch + 1, state=variables is not None)
        with export.atomic_path(path, suffix=os.path.basename(path)[len("epoch-0000"):]) \
                as staged:
            if variables is None:
                self.model.save_weights(staged)
            else:
                _save_variables(variables(), staged)
        for older in _backups(self.backup_dir):
            if older < epoch + 1:
                os.remove(_backup_path(self.backup_dir, older))
        self.seconds += time.perf_counter() - started

    def on_train_end(self, logs=None):
        if self.delete_on_end:
            remove_backups(self.backup_dir)


def remove_backups(backup_dir):
    """Removes the backups in `backup_dir` (and the folder, when left empty)."""
    for epochs in _backups(backup_dir):
        os.remove(_backup_path(backup_dir, epochs))
    if os.path.isdir(backup_dir) and not os.listdir(backup_dir):
        os.rmdir(backup_dir)


def _backups(backup_dir):
    """`{epochs: file name}` of the backups in `backup_dir`."""
    if not os.path.isdir(backup_dir):
        return {}
    matches = (_BACKUP_NAME.match(name) for name in os.listdir(backup_dir))
    return {int(match.group(1)): match.group(0) for match in matches if match}


def _backup_path(backup_dir, epochs, state=None):
    """The backup of `epochs` epochs: the existing one, or a new `.state.npz`
    (`state`) or `.weights.h5` file."""
    if state is None:
        return os.path.join(backup_dir, _backups(backup_dir)[epochs])
    suffix = "state.npz" if state else "weights.h5"
    return os.path.join(backup_dir, f"epoch-{epochs:04d}.{suffix}")


def _save_variables(variables, path):
    arrays = {f"v{index:05d}": variable.numpy() for index, variable in enumerate(variables)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _restore_variables(variables, path):
    # Matched by order and shape, as Keras' load_weights matches: layer names
    # depend on what else the process built before.
    with np.load(path) as state:
        shapes = [state[f"v{index:05d}"].shape for index in range(len(state.files))]
        if shapes != [tuple(variable.shape) for variable in variables]:
            raise ValueError(
                f"The backup {path!r} holds {len(shapes)} variables that do not match "
                f"this model's {len(variables)} in order and shape; it belongs to "
                "another model."
            )
        for index, variable in enumerate(variables):
            variable.assign(state[f"v{index:05d}"])


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` with a `NonFiniteLossError` at the first NaN or Inf loss.

    Unlike `keras.callbacks.TerminateOnNaN`, which ends `fit` quietly, this
    raises, naming the epoch, the step and every loss term logged at that
    step (each log whose name ends in `loss`), so the run fails loudly and
    its last backup is left as it was.

    It checks each step's logs on Keras' callback thread (`async_safe`), so
    training never waits for it: the error is raised in `fit` a step or two
    later, and at the latest at the epoch's end, before a backup is written.

    Args:
        context: a sentence added to the error (where the last good
            backup is, say).
    """

    def __init__(self, context=""):
        super().__init__()
        self.context = context
        self._epoch = 0
        # Keras then runs on_train_batch_end off the training thread, and
        # steps need not wait for their logs to reach the host.
        self.async_safe = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        terms = {
            name: float(value)
            for name, value in (logs or {}).items()
            if name.endswith("loss")
        }
        if all(math.isfinite(value) for value in terms.values()):
            return
        described = ", ".join(f"{name}={value:.6g}" for name, value in sorted(terms.items()))
        message = (
            f"Non-finite loss at epoch {self._epoch + 1}, step {batch + 1} "
            f"(the logs are means over the epoch so far): {described}."
        )
        raise NonFiniteLossError(f"{message} {self.context}".strip())


class FidelityCallback(keras.callbacks.Callback):
    """Logs how closely the student matches its teacher on a split, each epoch.

    At the end of every `every`-th epoch it measures, on `data`, the top-1
    agreement and the predictive KL (nats) of the student against the
    teacher at temperature 1, and the student's accuracy when the batches
    carry labels (`keras_kd.fidelity.Fidelity`, as every report measures
    them). They enter the epoch's logs as `<name>_agreement`,
    `<name>_predictive_kl` and `<name>_student_accuracy`, so `History` (what `fit`
    returns), the progress bar, `CSVLogger` and any callback after this one
    see them. With `log_dir`, they are also written for TensorBoard to
    `<log_dir>/<name>` as `epoch_agreement`, ... (the layout of
    `keras.callbacks.TensorBoard`, so the curves sit beside its own).

    The teacher is fixed, so its outputs on `data` are computed once, at the
    first measurement, and kept in memory; `data` must therefore be the same
    batches every epoch (a held-out split, not a shuffled or augmented
    stream) and small enough to keep.

    Args:
        data: batches in any `keras_kd.batch` format (a `tf.data.Dataset`
            or a list); those carrying `teacher_logits` do not call the teacher.
        name: prefix of the logged names (`"test"`, `"train"`, ...).
        teacher: the teacher model; default: the fitted model's `teacher`
            (a `keras_kd.Distiller`'s).
        student: the student model; default: the fitted model's `student`,
            or the fitted model itself.
        log_dir: TensorBoard folder, or `None`.
        every: measure every this many epochs (and after the last).

    Example:

    >>> teacher = keras_kd.models.get("mlp", (4,), 3)
    >>> student = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> distiller = keras_kd.Distiller(student, teacher)
    >>> distiller.compile("adam")
    >>> x = np.random.rand(32, 4); y = np.random.randint(0, 3, 32)
    >>> held_out = [(x[:16], y[:16])]
    >>> history = distiller.fit(x, y, epochs=2, verbose=0,
    ...                         callbacks=[keras_kd.callbacks.FidelityCallback(held_out)])
    >>> len(history.history["test_agreement"])
    2
    """

    def __init__(self, data, name="test", teacher=None, student=None, log_dir=None, every=1):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}.")
        if not name or not isinstance(name, str):
            raise ValueError(f"name must be a non-empty string; got {name!r}.")
        self.data = data
        self.name = name
        self.teacher = teacher
        self.student = student
        self.log_dir = log_dir
        self.every = every
        self._batches = None
        self._writer = None
        self._measure = None
        self._fidelity = fidelity_lib.Fidelity(calibration=False)

    def _models(self):
        teacher = self.teacher if self.teacher is not None else getattr(
            self.model, "teacher", None
        )
        student = self.student if self.student is not None else getattr(
            self.model, "student", self.model
        )
        if teacher is None:
            raise ValueError(
                "FidelityCallback needs a teacher: fit a keras_kd.Distiller or "
                "pass teacher=..."
            )
        return teacher, student

    def _held_out_batches(self, teacher):
        """Each batch with its teacher logits, computed once."""
        batches = []
        for data in self.data:
            batch = batch_lib.unpack(data)
            batches.append(dataclasses.replace(
                batch, teacher_logits=fidelity_lib.teacher_logits(batch, teacher)
            ))
        if not batches:
            raise ValueError(f"FidelityCallback({self.name!r}) got no batches.")
        return batches

    def measure(self):
        """The fidelity of the student now, as a dict of floats."""
        teacher, student = self._models()
        if self._batches is None:
            self._batches = self._held_out_batches(teacher)

            def measure_batch(*parts):
                # A batch travels as its parts: tf.function traces tensors, not dataclasses.
                batch = batch_lib.DistillationBatch(*parts)
                self._fidelity.update_state(
                    batch, batch.teacher_logits, student(batch.x, training=False)
                )

            self._measure = tf.function(measure_batch, reduce_retracing=True)
        self._fidelity.reset_state()
        for batch in self._batches:
            self._measure(*(getattr(batch, field.name) for field in dataclasses.fields(batch)))
        return self._fidelity.result()

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every and epoch + 1 != last:
            return
        results = self.measure()
        if logs is not None:
            logs.update({f"{self.name}_{key}": value for key, value in results.items()})
        if self.log_dir:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(
                    os.path.join(self.log_dir, self.name)
                )
            with self._writer.as_default():
                for key, value in results.items():
                    _write_scalar(f"epoch_{key}", value, epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _write_scalar(tag, value, step):
    """`tf.summary.scalar` without the TensorBoard package it needs.

    Writes the summary TensorBoard's scalar plugin writes (a float32 tensor
    tagged for the `scalars` plugin), so the curves show in TensorBoard, but
    training does not need TensorBoard installed.
    """
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(value, "float32"), step=step, metadata=metadata)
