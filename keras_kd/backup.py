"""Backups of a fit, written atomically, and the epoch a rerun resumes at.

`BackupAndRestore` backs a fit up at each epoch's end; `resume_epoch` is
where a rerun starts, agreed by every worker of a multi-worker strategy;
`remove_backups` clears a trainer's folder once its work is saved, and
`remove_empty_folders` the tree a job's trainers shared.
"""

import errno
import os
import re
import time

import keras
import numpy as np

from keras_kd import distribute
from keras_kd import export
from keras_kd import keras_compat

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
        every_steps: back up at the end of an epoch only once this many
            optimizer steps have passed since the last backup (or the start),
            and after the last epoch; 0 backs up every epoch. Counted in
            epochs of known length, so every worker of a multi-worker fit
            backs up the same epochs.

    Example:

    >>> import keras, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> folder = tempfile.mkdtemp()
    >>> backup = keras_kd.backup.BackupAndRestore(folder, delete_on_end=False)
    >>> _ = model.fit(np.ones((8, 4)), np.ones(8), epochs=2, callbacks=[backup], verbose=0)
    >>> keras_kd.backup.BackupAndRestore.completed_epochs(folder)
    2
    """

    def __init__(self, backup_dir, delete_on_end=True, every_steps=0):
        super().__init__()
        if not backup_dir:
            raise ValueError(f"backup_dir must be a folder path; got {backup_dir!r}.")
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 0:
            raise ValueError(f"every_steps must be an integer >= 0; got {every_steps!r}.")
        self.backup_dir = os.fspath(backup_dir)
        self.delete_on_end = delete_on_end
        self.every_steps = every_steps
        self._backed_up_at = 0  # the epochs the last backup completed
        self.seconds = 0.0  # spent writing backups, for a job's timing

    @staticmethod
    def completed_epochs(backup_dir):
        """The epochs the last backup in `backup_dir` completed (0 if none)."""
        return max(_backups(backup_dir), default=0)

    def on_train_begin(self, logs=None):
        epochs = self.completed_epochs(self.backup_dir)
        self._backed_up_at = epochs
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
        keras_compat.start_fit_at(self.model, epochs)

    def _due(self, epochs):
        params = self.params or {}
        if not self.every_steps or epochs == params.get("epochs") or not params.get("steps"):
            return True
        return (epochs - self._backed_up_at) * params["steps"] >= self.every_steps

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch + 1):
            return
        self._backed_up_at = epoch + 1
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
    remove_if_empty(backup_dir)


def remove_if_empty(folder):
    """Removes `folder` if it is empty; returns whether it is gone.

    Workers of one job share backup folders (a worker's sits inside the chief's), so another
    process may remove or fill `folder` between a look at it and the removal: both are
    answers, not errors.
    """
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        return True
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            return False
        raise
    return True


def remove_empty_folders(folder, stop):
    """Removes `folder`'s empty subfolders, then it and its parents up to `stop`, if empty."""
    for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        remove_if_empty(root)
    stop = os.path.abspath(stop)
    parent = os.path.abspath(folder)
    while len(parent) >= len(stop) and remove_if_empty(parent):
        parent = os.path.dirname(parent)


def _backups(backup_dir):
    """`{epochs: file name}` of the backups in `backup_dir`."""
    try:
        names = os.listdir(backup_dir)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    matches = (_BACKUP_NAME.match(name) for name in names)
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


def resume_epoch(backup_dir, strategy):
    """The epoch a fit backed up to `backup_dir` resumes at, agreed by all workers.

    Workers whose backups disagree (one was lost, say) all start over, and
    their backups are removed, so no worker restores one.
    """
    if backup_dir is None:
        return 0
    epochs = BackupAndRestore.completed_epochs(backup_dir)
    if distribute.agreed(epochs, strategy) is None:
        remove_backups(backup_dir)
        return 0
    return epochs
