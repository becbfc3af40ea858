"""Callbacks for fault-tolerant training: atomic backups, and a stop on NaN."""

import math
import os
import re

import keras

from keras_kd import export

_BACKUP_NAME = re.compile(r"^epoch-(\d+)\.weights\.h5$")


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up training state at each epoch's end; a rerun resumes from it.

    Like `keras.callbacks.BackupAndRestore`, but each backup is written to a
    temporary file and renamed into place, named by the epochs it completes
    (`epoch-0003.weights.h5`), so a process killed mid-write leaves the
    previous backup intact and never a partial one that looks finished.
    The weights include the optimizer's state (its step count, so also the
    learning-rate schedule's position).

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
        self.model.load_weights(_backup_path(self.backup_dir, epochs))
        # What keras.callbacks.BackupAndRestore sets: fit starts at this epoch.
        self.model._initial_epoch = epochs

    def on_epoch_end(self, epoch, logs=None):
        path = _backup_path(self.backup_dir, epoch + 1)
        with export.atomic_path(path, suffix=".weights.h5") as staged:
            self.model.save_weights(staged)
        for older in _backups(self.backup_dir):
            if older < epoch + 1:
                os.remove(_backup_path(self.backup_dir, older))

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
    if not os.path.isdir(backup_dir):
        return []
    matches = (_BACKUP_NAME.match(name) for name in os.listdir(backup_dir))
    return sorted(int(match.group(1)) for match in matches if match)


def _backup_path(backup_dir, epochs):
    return os.path.join(backup_dir, f"epoch-{epochs:04d}.weights.h5")


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
