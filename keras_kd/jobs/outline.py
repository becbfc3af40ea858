"""The outline every job shares: strategy, folders, resume, backups, timing, clean-up.

A job (distill, teachers, GAN) opens a `JobRun`, does its work inside it and
calls `finish()` once every file is written:

    run = JobRun(config.runtime)          # before any TensorFlow work
    data = ...
    run.open(output_dir)
    with run.timed("train_s"):
        epoch = run.resume_epoch(run.backup_dir("student"))
        ...
    run.finish()

Under a multi-worker strategy every worker runs the same job: `write_path`
sends the chief's files to `output_dir` and the others' to scratch folders;
each worker backs up to its own folder, and all agree on where to resume.
"""

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time

from keras_kd import backup
from keras_kd import distribute
from keras_kd import export
from keras_kd import models
from keras_kd.jobs.lock import FolderLock


_FINGERPRINT = "fingerprint.json"


def _fingerprint_changes(backup_dir, fingerprint):
    """The names whose values differ from the fingerprint stored with the
    backups in `backup_dir` (all of them if none is stored); [] without backups."""
    if not backup.BackupAndRestore.completed_epochs(backup_dir):
        return []
    try:
        with open(os.path.join(backup_dir, _FINGERPRINT)) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return ["(no readable fingerprint)"]
    current = json.loads(json.dumps(fingerprint, default=str))
    return sorted(name for name in set(stored) | set(current)
                  if stored.get(name) != current.get(name))


class ConfigError(ValueError):
    """A setting that cannot work here (it does not fit the dataset, or names a
    folder that cannot be written), found before any training."""


class FolderError(ConfigError):
    """A folder a job must write to that cannot be written."""


def check_models_fit(info, **architectures):
    """Raises a `ConfigError` when a model does not read the dataset's kind of
    input, naming its flag (`student_arch="lstm"` on images, say)."""
    for flag, name in architectures.items():
        try:
            models.check_fits(name, info, role=flag)
        except ValueError as error:
            raise ConfigError(str(error)) from None


def check_writable(folder):
    """Raises a `FolderError` unless files can be written in `folder` (made if missing)."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise FolderError(
            f"Cannot write to {folder!r} ({error.strerror or error}); choose another "
            "folder or fix its permissions."
        ) from None


def start(runtime):
    """`runtime.start()`, with a strategy this process cannot make (a Slurm
    cluster without GPUs, CPU replicas once TensorFlow has started) as a
    `ConfigError` naming why, before any training."""
    try:
        return runtime.start()
    except ValueError as error:
        raise ConfigError(f"--strategy={runtime.strategy}: {error}") from None


class JobRun:
    """One run of a job: its strategy, folders, backups and timings.

    Args:
        runtime: the job's `keras_kd.runtime.Runtime`; starting the run
            applies it (strategy, precision, determinism), so make the
            `JobRun` before any other TensorFlow work.

    Attributes:
        strategy: the `tf.distribute` strategy every model is built under.
        timing: seconds spent in each `timed` section, for the report.
    """

    def __init__(self, runtime):
        self.runtime = runtime
        self.strategy = start(runtime)
        self.output_dir = self.backup_root = self.written_dir = None
        self.timing = {}
        self._backups = []
        self._lock = None
        self.resume_refused = {}  # trainer -> why its backup was not resumed

    def open(self, output_dir, *other_folders):
        """Sets the job's output folder (backups default to `<output_dir>/backup`)
        and checks, before any training, that it and `other_folders` (where
        the job also writes: teachers, caches) can be written. The chief then
        locks the output folder until `finish`, so a second run into it is
        refused at once.

        Raises:
            ConfigError: a folder that cannot be written.
            keras_kd.jobs.lock.FolderInUseError: another live run holds the folder.
        """
        self.output_dir = output_dir
        self.backup_root = self.runtime.resolved_backup_dir(output_dir)
        self.written_dir = distribute.worker_dir(output_dir, self.strategy)
        if self.is_chief:
            for folder in (output_dir, self.backup_root, *other_folders):
                check_writable(folder)
            self._lock = FolderLock(output_dir, "a keras_kd job").acquire()
        return self

    @contextlib.contextmanager
    def timed(self, name):
        """Adds the seconds spent in the `with` block to `timing[name]`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timing[name] = self.timing.get(name, 0.0) + time.perf_counter() - started

    def write_path(self, *names):
        """Where this process writes the output file `names` (the chief: the real path)."""
        return os.path.join(self.written_dir, *names)

    @property
    def is_chief(self):
        """Whether this process's files are the run's."""
        return distribute.is_chief(self.strategy)

    def backup_dir(self, *names):
        """This worker's backup folder for one trainer of the job (`"student"`, say)."""
        path = distribute.worker_backup_dir(
            os.path.join(self.backup_root, *names), self.strategy
        )
        self._backups.append(path)
        return path

    def resume_epoch(self, backup_dir, fingerprint=None):
        """The epoch the trainer backed up to `backup_dir` resumes at, agreed by all
        workers (0 when there is no backup).

        Args:
            backup_dir: the trainer's backup folder.
            fingerprint: `{name: value}` of what shapes this training (its
                settings, the data's digest, the code's version). A backup made
                under another fingerprint is never resumed: it is discarded,
                the log says which settings changed, and `resume_refused`
                records it for the report. The fingerprint is then stored
                beside the backups this run writes.
        """
        if fingerprint is not None:
            changed = _fingerprint_changes(backup_dir, fingerprint)
            if changed:
                reason = ("the backup was made with other settings: " + ", ".join(changed))
                logging.warning("Not resuming from %s: %s; training from the start.",
                                backup_dir, reason)
                backup.remove_backups(backup_dir)
                self.resume_refused[os.path.basename(backup_dir)] = reason
            os.makedirs(backup_dir, exist_ok=True)
            with open(os.path.join(backup_dir, _FINGERPRINT), "w") as f:
                json.dump(fingerprint, f, indent=1, sort_keys=True, default=str)
        return backup.resume_epoch(backup_dir, self.strategy)

    def write_report(self, report, name="report.json", markdown=None):
        """Writes the job's report: `report` (JSON-ready) as `name`, with the
        `timing` so far and, where the job has one, `markdown` beside it (as
        `report.md`); then `finish`es the job. Returns `report`."""
        report = {**report, "timing": self.timing}
        if markdown is not None:
            export.write_text(markdown(report), self.write_path("report.md"))
        export.write_json(report, self.write_path(name))
        self.finish()
        return report

    def finish(self):
        """Removes the backups and scratch folders, and releases the output
        folder: every file is written."""
        if self.is_chief:
            shutil.rmtree(self.backup_root, ignore_errors=True)
        else:
            for path in self._backups:
                shutil.rmtree(path, ignore_errors=True)
        distribute.cleanup_worker_dirs()
        if self._lock is not None:
            self._lock.release()
