"""The teacher ensemble: members trained once, reused by key, and the teachers job."""

import contextlib
import dataclasses
import json
import logging
import os
import zipfile

import tensorflow as tf

from keras_kd import backup
from keras_kd import data as data_lib
from keras_kd import digests
from keras_kd import distribute
from keras_kd import evaluation
from keras_kd import export
from keras_kd import trace_cache
from keras_kd import training
from keras_kd.ensemble import Ensemble
from keras_kd.jobs import folders
from keras_kd.jobs import outline
from keras_kd.jobs.lock import FolderLock
from keras_kd.runtime import Runtime
from keras_kd.version import __version__


def teacher_data(config, data):
    """The data the members of `config.teacher` are trained on: the first
    `teacher.data_fraction` of the training split."""
    return data.train_head(config.teacher.data_fraction)


def train(config, verbose="auto"):
    """The teachers job: trains (or reuses) the members of `config`'s ensemble.

    Args:
        config: a `keras_kd.jobs.TeachersConfig`; its `output.directory`, when
            set, is the members' folder (default: `teacher.directory`, or
            `<saved_models_dir>/<dataset>/teachers`).

    Returns:
        `{"members": [...], "ensemble_test_accuracy": float, "directory": str,
        "chief": bool}`, each member as `ensemble_members` returns it; `chief`
        says whether this process's files are the run's (multi-worker).
    """
    run = outline.JobRun(config.runtime)
    data = data_lib.load(config.data.dataset, data_dir=config.data.data_dir)
    outline.check_models_fit(data.info, teacher_arch=config.teacher.arch)
    directory = folders.path(config, data.info.slug, "teachers_job")
    run.open(directory)
    members, teacher = ensemble(config, data, run, verbose, directory=directory,
                                backup_dir=run.backup_root)
    accuracy = evaluation.accuracy(
        teacher, data_lib.batched(data.test, config.training.batch_size))
    run.finish()
    return {"members": members, "ensemble_test_accuracy": accuracy, "directory": directory,
            "chief": run.is_chief}


def ensemble(config, data, job, verbose="auto", directory=None, backup_dir=None):
    """A job's teacher: `(members, Ensemble)`, its members trained or reused.

    Args:
        config: a job config with `teacher`, `training` and `runtime` groups.
        data: the job's `Splits`; the members train on `teacher_data`.
        job: the job's `keras_kd.jobs.outline.JobRun`; the ensemble is built
            in its strategy's scope.
        verbose: Keras' progress output.
        directory: the members' folder (default: the config's teachers folder).
        backup_dir: where members in training are backed up (default: the
            job's backups, under `teachers`).
    """
    directory = directory or folders.path(config, data.info.slug, "teachers")
    if backup_dir is None:
        backup_dir = os.path.join(job.backup_root, "teachers")
    members = ensemble_members(
        config.teacher.spec(config.training), teacher_data(config, data),
        config.teacher.members, directory, verbose, config.runtime, backup_dir,
    )
    with job.strategy.scope():
        teacher = Ensemble([member_model(member["path"]) for member in members])
    return members, teacher


def member_model(path, saved=None):
    """The member (or control) saved at `path`, for inference: `saved`, the
    model just saved there, or the file loaded.

    In a sweep (an active `keras_kd.trace_cache`, on one device), a file
    this process saved or loaded before, unchanged since (the same digest),
    is not loaded again: members are frozen, so runs share the model.
    """
    load = (lambda: saved) if saved is not None else (lambda: export.load_model(path))
    if trace_cache.active() is None or tf.distribute.has_strategy():
        return load()
    return trace_cache.kept(("member", path, digests.file_digest(path)), load)


def member_settings(spec, data, precision="float32"):
    """What a member's key digests: its training settings, the dataset's name
    (an npz file's without its path: `DatasetInfo.key_name`) and content
    digest, keras_kd's version (and a precision other than float32)."""
    settings = {"dataset": data.info.key_name, **dataclasses.asdict(spec),
                "data_digest": data.digest, "keras_kd": __version__}
    if precision != "float32":
        settings["precision"] = precision
    return settings


def member_key(spec, data, precision="float32"):
    """The key of the members trained by `spec` on `data`: their folder is `<arch>-<key>`."""
    return digests.json_digest(member_settings(spec, data, precision), length=10)


def ensemble_members(
    spec, data, num_members, directory, verbose="auto", runtime=None, backup_dir=None
):
    """The paths of `num_members` trained members, training only what is missing.

    Members live in `<directory>/<arch>-<key>/member_<k>.keras`, where `key`
    hashes every training setting, the dataset's content (a digest of its
    splits, not its name) and keras_kd's version, so changed settings, data
    or code never reuse stale members. Member `k` is trained with a seed
    derived from `(spec.seed, k)`: a 5-member ensemble extends a 3-member
    one. A member counts as finished once its `.keras` file and its `.json`
    record (test metrics, settings and the file's digest, written after the
    model) both exist, each written whole or not at all, and the file still
    has its recorded digest; a damaged member is reported and retrained.

    With `backup_dir`, a member in training is backed up to
    `<backup_dir>/<arch>-<key>/member_<k>` at each epoch, and a rerun resumes
    it. Under a multi-worker `runtime`, workers reuse a member only if all of
    them find it, and only the chief writes into `directory`.

    Returns:
        A list of dicts with `path`, `test_accuracy`, `reused` and, for a
        member retrained because its files were damaged, `rebuilt` (why).
    """
    if not isinstance(num_members, int) or num_members < 1:
        raise ValueError(f"members must be a positive integer; got {num_members!r}.")
    runtime = runtime or Runtime()
    strategy = runtime.start()
    settings = member_settings(spec, data, runtime.precision)
    key = member_key(spec, data, runtime.precision)
    folder = os.path.join(directory, f"{spec.arch}-{key}")
    paths = [os.path.join(folder, f"member_{k}.keras") for k in range(num_members)]
    damage = [_damage(path) for path in paths]
    finished = distribute.all_workers_agree([problem is None for problem in damage], strategy)
    write_folder = distribute.worker_dir(folder, strategy)
    # Two runs must not train the same members at once: the trainer locks the folder.
    training_any = not all(finished) and distribute.is_chief(strategy)
    lock = FolderLock(folder, f"a run training teacher members {spec.arch}-{key}")
    with contextlib.ExitStack() as stack:
        if training_any and distribute.is_multi_worker(strategy):
            stack.enter_context(lock)
        elif training_any:
            # One process: wait for another run training these members (a
            # sweep's concurrent runs), then reuse what it finished.
            lock.acquire_when_free()
            stack.callback(lock.release)
            damage = [_damage(path) for path in paths]
            finished = [problem is None for problem in damage]
        records = _members(spec, data, key, settings, paths, finished, write_folder, verbose,
                           runtime, backup_dir, strategy)
    for record, problem in zip(records, damage):
        if not record["reused"] and problem not in (None, "missing"):
            record["rebuilt"] = problem
    if backup_dir is not None:
        backup.remove_empty_folders(os.path.join(backup_dir, f"{spec.arch}-{key}"), stop=backup_dir)
    return records


def _members(spec, data, key, settings, paths, finished, write_folder, verbose, runtime,
             backup_dir, strategy):
    """Each member's record: read when finished, else trained and saved."""
    records = []
    for k, (path, reuse) in enumerate(zip(paths, finished)):
        if reuse:
            with open(_record_path(path)) as f:
                record = json.load(f)
            records.append({"path": path, "test_accuracy": record["test_accuracy"], "reused": True})
            continue
        member_backup = None
        if backup_dir is not None:
            member_backup = distribute.worker_backup_dir(
                os.path.join(backup_dir, f"{spec.arch}-{key}", f"member_{k}"), strategy
            )
        model = training.train_classifier(
            spec, data, training.member_seed(spec, k), verbose, runtime, member_backup
        )
        test_accuracy = evaluation.accuracy(model, data_lib.batched(data.test, spec.batch_size))
        path = os.path.join(write_folder, os.path.basename(path))
        export.save_keras(model, path)
        record = {"settings": settings, "member": k, "test_accuracy": test_accuracy,
                  "sha256": digests.file_digest(path)}
        with strategy.scope():
            member_model(path, saved=model)  # in a sweep, kept for this run and later ones
        export.write_json(record, _record_path(path))
        if member_backup is not None:
            backup.remove_backups(member_backup)
        records.append({"path": path, "test_accuracy": test_accuracy, "reused": False})
    return records


def _damage(path):
    """Why the member at `path` cannot be reused (`"missing"`, ...), or None."""
    record_path = _record_path(path)
    if not os.path.isfile(path) or not os.path.isfile(record_path):
        return "missing"
    try:
        with open(record_path) as f:
            record = json.load(f)
        float(record["test_accuracy"])
    except (OSError, ValueError, KeyError, TypeError):
        problem = f"its record {record_path!r} is unreadable"
    else:
        expected = record.get("sha256")
        if expected is None:
            problem = None if zipfile.is_zipfile(path) else f"{path!r} is not a .keras archive"
        elif digests.file_digest(path) != expected:
            problem = f"{path!r} differs from the file its record describes (damaged)"
        else:
            problem = None
    if problem is not None:
        logging.warning("Teacher member %s cannot be reused: %s; retraining it.", path, problem)
    return problem


def _record_path(member_path):
    return member_path[: -len(".keras")] + ".json"
