"""The paper's reference: a student distilled by the identical procedure
from an independent teacher, trained once and reused by key.

Stanton et al. (2021, section 3.2) read a student's agreement with its
teacher beside that of a second student, distilled by the identical
procedure from an independent teacher: what two students of one procedure
share without sharing a teacher. `keras_kd.jobs.control` holds the other
reference, a model trained on the labels alone.
"""

import json
import os

from keras_kd import digests
from keras_kd import export
from keras_kd.jobs import lock as lock_lib
from keras_kd.jobs import teachers as teachers_lib

RECORD = "reference.json"


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
            test = report["splits"]["test"]
            record = {
                "key": key, "path": report["artifacts"]["keras"],
                "sha256": digests.file_digest(report["artifacts"]["keras"]),
                "seed": config.training.seed, "test_accuracy": test["student_accuracy"],
                "test_agreement_with_its_teacher": test["agreement"],
                "teacher_test_accuracy": test["teacher_accuracy"],
            }
            export.write_json(record, os.path.join(folder, RECORD))
    finally:
        folder_lock.release()
    with strategy.scope():
        model = teachers_lib.member_model(record["path"])
    return model, {**{name: value for name, value in record.items()
                      if name not in ("key", "sha256")}, "reused": reused}


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
