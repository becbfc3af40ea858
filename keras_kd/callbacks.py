"""Callbacks: a stop on NaN, and fidelity logged each epoch.

`BackupAndRestore` (atomic backups of a fit) lives in `keras_kd.backup`, and
is exported here too, beside the other callbacks a fit takes.
"""

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_kd import batch as batch_lib
from keras_kd import fidelity as fidelity_lib
from keras_kd import trace_cache
from keras_kd.backup import BackupAndRestore

__all__ = ["BackupAndRestore", "FidelityCallback", "NonFiniteInputError", "NonFiniteLossError",
           "StopOnNonFiniteLoss"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class NonFiniteInputError(NonFiniteLossError):
    """A batch's inputs, its teacher's logits or the student's logits held a
    NaN or an infinity, so its loss would mean nothing (`keras_kd.Distiller`
    stops on it, naming the step)."""


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
        context: a sentence added to the error (what stopped, say).
        backup_dir: the fit's backup folder, if it has one: the error then
            says which epoch its last good backup holds, or that no epoch
            finished, so there is none.
    """

    def __init__(self, context="", backup_dir=None):
        super().__init__()
        self.context = context
        self.backup_dir = backup_dir
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
        raise NonFiniteLossError(" ".join(filter(None, (message, self.context,
                                                        self._backup_sentence()))))

    def _backup_sentence(self):
        if self.backup_dir is None:
            return ""
        epochs = BackupAndRestore.completed_epochs(self.backup_dir)
        if not epochs:
            return "No epoch had finished, so there is no backup to resume from."
        return f"Its last good backup, after epoch {epochs}, is in {self.backup_dir!r}."


# What a FidelityCallback logs: the names `Fidelity(calibration=False)` reports.
_LOGGED = ("student_accuracy", "agreement", "predictive_kl")
CURVES = ("log", "all", "every:K")


def curve_epochs(schedule, epochs):
    """The epochs (from 1) a fidelity curve of schedule `schedule` measures,
    over a fit of `epochs` epochs: `"all"` every epoch, `"log"` epochs 1, 2,
    4, 8, ... and the last (a point per doubling: 7 of 60 epochs, 11 of
    1,000), `"every:K"` every K-th and the last.

    >>> curve_epochs("log", 30), curve_epochs("every:10", 25)
    ([1, 2, 4, 8, 16, 30], [10, 20, 25])
    """
    if schedule == "all":
        return list(range(1, epochs + 1))
    if schedule == "log":
        chosen = {2**power for power in range(epochs.bit_length()) if 2**power <= epochs}
    else:
        kind, _, step = str(schedule).partition(":")
        if kind != "every" or not step.isdigit() or int(step) < 1:
            raise ValueError(f"A fidelity curve is one of {list(CURVES)} (K >= 1); "
                             f"got {schedule!r}.")
        chosen = set(range(int(step), epochs + 1, int(step)))
    return sorted(chosen | {epochs})


def _traced_measure(teacher, student):
    """`(fidelity, teacher_forward, measure)`: a `Fidelity` metric, the
    teacher's forward pass on inputs, and the metric's update on one
    `DistillationBatch`, each traced once per batch structure, for any batch
    size (a split's smaller last batch does not trace again)."""
    fidelity = fidelity_lib.Fidelity(calibration=False)

    def update(parts):
        # A batch travels as a dict of its parts: tf.function traces tensors, not dataclasses.
        batch = batch_lib.DistillationBatch(**parts)
        fidelity.update_state(batch, batch.teacher_logits, student(batch.x, training=False))

    traced_update = trace_cache.any_batch_size(update, autograph=False)
    traced_forward = trace_cache.any_batch_size(lambda x: teacher(x, training=False))

    def measure(batch):
        traced_update({field.name: getattr(batch, field.name)
                       for field in dataclasses.fields(batch)
                       if getattr(batch, field.name) is not None})

    return fidelity, traced_forward, measure


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
        epochs: the epochs (counted from 1) to measure after, instead of
            `every` (`curve_epochs` makes them; the last is always measured).
        missing: what the logs hold for this callback's names after an
            epoch it does not measure (`None`: nothing, so they are absent;
            a job passes NaN, so a `CSVLogger` keeps the same columns).

    Example:

    >>> teacher = keras_kd.models.get("mlp", (4,), 3)
    >>> student = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> distiller = keras_kd.Distiller(teacher=teacher, student=student)
    >>> distiller.compile("adam")
    >>> x = np.random.rand(32, 4); y = np.random.randint(0, 3, 32)
    >>> held_out = [(x[:16], y[:16])]
    >>> history = distiller.fit(x, y, epochs=2, verbose=0,
    ...                         callbacks=[keras_kd.callbacks.FidelityCallback(held_out)])
    >>> len(history.history["test_agreement"])
    2
    """

    def __init__(self, data, name="test", teacher=None, student=None, log_dir=None, every=1,
                 epochs=None, missing=None):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}.")
        if epochs is not None and not all(
                isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 1
                for epoch in epochs):
            raise ValueError(f"epochs must be epoch numbers counted from 1; got {epochs!r}.")
        self.epochs = None if epochs is None else frozenset(epochs)
        self.missing = missing
        self._logged = ()
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
        self._fidelity = None
        self._shared = {}  # traced measures, by (teacher, student): see `for_splits`
        self.seconds = 0.0  # spent measuring, for a job's timing

    @classmethod
    def for_splits(cls, splits, **kwargs):
        """One callback per split of `splits` (`{name: data}`), in its order,
        each taking `kwargs`; they trace the measure once, together.

        >>> callbacks = keras_kd.callbacks.FidelityCallback.for_splits(
        ...     {"test": [], "train": []}, every=5)
        >>> [callback.name for callback in callbacks]
        ['test', 'train']
        """
        shared = {}
        callbacks = [cls(data, name, **kwargs) for name, data in splits.items()]
        for callback in callbacks:
            callback._shared = shared
        return callbacks

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

    def _held_out_batches(self, teacher, teacher_forward):
        """Each batch with its teacher logits, computed once."""
        batches = []
        for data in self.data:
            batch = batch_lib.unpack(data)
            computed = None if batch.teacher_logits is not None else teacher_forward(batch.x)
            batches.append(dataclasses.replace(
                batch, teacher_logits=fidelity_lib.teacher_logits(batch, teacher, computed)
            ))
        if not batches:
            raise ValueError(f"FidelityCallback({self.name!r}) got no batches.")
        return batches

    def measure(self):
        """The fidelity of the student now, as a dict of floats."""
        teacher, student = self._models()
        if self._batches is None:
            if (teacher, student) not in self._shared:
                # In a sweep, the kept models of a later run reuse these traces too.
                self._shared[teacher, student] = trace_cache.kept(
                    ("FidelityCallback", teacher, student),
                    lambda: _traced_measure(teacher, student))
            self._fidelity, teacher_forward, self._measure = self._shared[teacher, student]
            self._batches = self._held_out_batches(teacher, teacher_forward)
        self._fidelity.reset_state()
        for batch in self._batches:
            self._measure(batch)
        return self._fidelity.result()

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        wanted = epoch + 1 in self.epochs if self.epochs is not None else \
            not (epoch + 1) % self.every
        if not wanted and epoch + 1 != last:
            if self.missing is not None and logs is not None:
                logs.update({f"{self.name}_{key}": self.missing
                             for key in self._logged or _LOGGED})
            return
        started = time.perf_counter()
        results = self.measure()
        self.seconds += time.perf_counter() - started
        self._logged = tuple(results)
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
