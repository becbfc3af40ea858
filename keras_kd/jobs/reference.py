"""The paper's reference: a student distilled by the identical procedure
from an independent teacher, trained once and reused by key.

Stanton et al. (2021, section 3.2) read a student's agreement with its
teacher beside that of a second student, distilled by the identical
procedure from an independent teacher: what two students of one procedure
share without sharing a teacher. `keras_kd.jobs.control` holds the other
reference, a model trained on the labels alone.
"""

import dataclasses
import json
import os

from keras_kd import digests
from keras_kd import export
from keras_kd.jobs import lock as lock_lib
from keras_kd.jobs import teachers as teachers_lib

RECORD = "reference.json"
# The file of a reference published by the run that trained it (`publish`).
PUBLISHED_MODEL = "student.keras"


@dataclasses.dataclass
class Claim:
    """A run's hold on the reference slot its own student fills (`claim`)."""

    lock: lock_lib.FolderLock
    folder: str
    key: str
    seed: int

    def release(self):
        """Gives the slot up, published or not."""
        self.lock.release()


def claim(config, key, directory):
    """Claims the reference slot that a run's own student fills, if it is free.

    A run's student is the reference of the run at the previous seed (that
    run's `reference_config()` is this run's `student_only_config()`). The
    run holds the slot while it trains its student, so the previous seed's
    run waits for that student (`reference_student`) rather than distilling
    the same one again, and then `publish`es it.

    Args:
        config: the run's `DistillConfig.student_only_config()`.
        key: its result key.
        directory: the references folder.

    Returns:
        A held `Claim`, or `None` when the slot is filled already (a record
        of `key`) or another run holds it.
    """
    folder = os.path.join(directory, config.run_name())
    if _finished(folder, key) is not None:
        return None
    folder_lock = lock_lib.FolderLock(folder, "a run training this reference as its student")
    try:
        folder_lock.acquire()
    except lock_lib.FolderInUseError:
        return None
    if _finished(folder, key) is not None:  # filled between the look and the lock
        folder_lock.release()
        return None
    return Claim(folder_lock, folder, key, config.training.seed)


def publish(held, student, test):
    """Saves a run's trained student as the reference its `Claim` holds, then
    releases it.

    Args:
        held: the run's `Claim`.
        student: the trained student.
        test: its test-split metrics (`keras_kd.evaluation.fidelity_metrics`
            against its own teacher).
    """
    try:
        path = os.path.join(held.folder, PUBLISHED_MODEL)
        student.save(path)
        export.write_json(_record(held.key, path, held.seed, test),
                          os.path.join(held.folder, RECORD))
    finally:
        held.release()


def reference_student(config, key, directory, strategy, verbose, distill):
    """The reference of a run: distilled by `distill`, or reused from `directory`.

    Args:
        config: the reference's `DistillConfig` (`DistillConfig.reference_config()`).
        key: its result key (`keras_kd.jobs.distill.result_key`): a record
            of another key is not reused.
        directory: the references folder; the reference's run lives in
            `<directory>/<config.run_name()>`, its record beside its student.
        strategy: the models are loaded in its scope.
        verbose: Keras' progress output.
        distill: `distill(config, output_dir, verbose) -> report`, the
            distill job (passed in: that job calls this one).

    Returns:
        `(model, record)`: the reference student and `{"path", "seed",
        "test_accuracy", "test_agreement_with_its_teacher", "teacher_test_accuracy",
        "reused"}`.
    """
    folder = os.path.join(directory, config.run_name())
    # Runs of a sweep that share a reference wait for the one distilling it.
    folder_lock = lock_lib.FolderLock(folder, "a run distilling a reference student")
    folder_lock.acquire_when_free()
    try:
        record = _finished(folder, key)
        reused = record is not None
        if not reused:
            report = distill(config, folder, verbose)
            record = _record(key, report["artifacts"]["keras"], config.training.seed,
                             report["splits"]["test"])
            export.write_json(record, os.path.join(folder, RECORD))
    finally:
        folder_lock.release()
    with strategy.scope():
        model = teachers_lib.member_model(record["path"])
    return model, {**{name: value for name, value in record.items()
                      if name not in ("key", "sha256")}, "reused": reused}


def _record(key, path, seed, test):
    return {
        "key": key, "path": path, "sha256": digests.file_digest(path), "seed": seed,
        "test_accuracy": test["student_accuracy"],
        "test_agreement_with_its_teacher": test["agreement"],
        "teacher_test_accuracy": test["teacher_accuracy"],
    }


def _finished(folder, key):
    """The reference's record if it was distilled with `key` and its file is intact."""
    try:
        with open(os.path.join(folder, RECORD)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    path = record.get("path")
    if record.get("key") != key or not path or not os.path.isfile(path):
        return None
    return record if digests.file_digest(path) == record.get("sha256") else None
