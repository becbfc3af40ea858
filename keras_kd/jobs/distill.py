"""The distill job: train a teacher ensemble, distill a student, report fidelity.

`run(DistillConfig(...))` is what `python -m launch.distill` does; call it
from a notebook or a sweep to get the same run and the same files.
"""

import dataclasses
import functools
import json
import os

import keras
import numpy as np

from keras_kd import callbacks as callbacks_lib
from keras_kd import config as config_lib
from keras_kd import data as data_lib
from keras_kd import digests
from keras_kd import distribute
from keras_kd import evaluation
from keras_kd import export
from keras_kd import initialization
from keras_kd import loss_surface
from keras_kd import models
from keras_kd import seeds
from keras_kd import trace_cache
from keras_kd import training
from keras_kd.distiller import Distiller
from keras_kd.jobs import configs
from keras_kd.jobs import control as control_lib
from keras_kd.jobs import folders
from keras_kd.jobs import outline
from keras_kd.jobs import recipes
from keras_kd.jobs import reference as reference_lib
from keras_kd.jobs.outline import ConfigError
from keras_kd.jobs import report as report_lib
from keras_kd.jobs import teachers as teachers_lib


# Examples per batch of the per-epoch fidelity passes over the held-out splits.
HELD_OUT_BATCH = 512


def result_key(config):
    """A digest of what a distill run computes from: every setting that shapes
    its result, the data's content, the GAN file its `gan` stage samples (if
    any) and keras_kd's version.

    Two runs with one key compute the same result, so a sweep may reuse one's
    result for the other (`keras_kd.experiments.run_sweep`'s `key`).

    Example:

    >>> base = keras_kd.jobs.DistillConfig()
    >>> moved = keras_kd.config.override(base, {"output_dir": "elsewhere"})
    >>> result_key(base) == result_key(moved)
    True
    """
    slug, data_digest = _data_identity(config.data.dataset, config.data.data_dir)
    inputs = configs.training_fingerprint(config, data_digest)
    if "gan" in config.distillation_set.resolve(config.data.dataset).stages:
        path = folders.path(config, slug, "generator")
        inputs["generator"] = digests.file_digest(path) if os.path.exists(path) else None
    return digests.json_digest(inputs, length=16)


@functools.lru_cache(maxsize=16)
def _data_identity(dataset, data_dir):
    """`(slug, digest)` of a dataset, loaded once per process for the keys of a sweep."""
    data = data_lib.load(dataset, data_dir=data_dir)
    return data.info.slug, data.digest


@dataclasses.dataclass
class _Run:
    """What every step of one distill run reads: its config, data and outline."""

    config: configs.DistillConfig
    data: data_lib.Splits
    job: outline.JobRun
    verbose: str | int
    policy: data_lib.Policy = None
    synthetic: data_lib.SyntheticSource | None = None

    @property
    def distill_data(self):
        """The splits the student (and its control) learns from."""
        chosen = self.config.distillation_set.data
        if chosen == "teacher":
            return teachers_lib.teacher_data(self.config, self.data)
        if chosen == "fresh":
            return self.data.train_tail(self.config.teacher.data_fraction)
        return self.data

    @property
    def labeled_data(self):
        """The splits whose labels the run may train on: the teachers' data
        (the student distills without labels on examples they never saw)."""
        return teachers_lib.teacher_data(self.config, self.data)

    def folder(self, name):
        """One of the run's folders (see `keras_kd.jobs.folders`)."""
        return folders.path(self.config, self.data.info.slug, name)

    def batched(self, split):
        """A split of the data (`"train"`, `"test"`) in the run's batch size, unshuffled."""
        return data_lib.batched(getattr(self.data, split), self.config.training.batch_size)


def run(config, verbose="auto"):
    """Runs the distill job and writes its files; returns the report.

    Writes `<output_dir>/report.json` (`{"config", "dataset", "splits",
    "teacher_members", "control", "artifacts", "timing", "resumed_at_epoch",
    "history", "student_start", "loss_plane"}`: `config` holds every setting under its
    flag name; `dataset` the dataset's sizes and generation settings;
    `splits` the metrics of each split (accuracy, ECE and NLL of teacher,
    student and control; agreement and predictive KL of the student and of
    the control with the teacher; ...); `control` the independent student's
    record; `history` the per-epoch logs, fidelity on the train and test
    splits included; `student_start` the train and test fidelity of an
    interpolated student before training; `loss_plane`, with
    `config.loss_plane`, the distillation loss on the plane through the
    student's initial and final weights and the teacher's, see
    `keras_kd.loss_surface`), `<output_dir>/report.md`, and the student as
    `<output_dir>/saved_model` and `<output_dir>/student.keras`. Teachers are
    reused from (or saved to) the teachers folder, the control (unless
    `control.enabled` is off) from the controls folder. Fidelity is reported
    on the `train` split (as it is, un-augmented), the `test` split, and
    `distill`: a sample of the distillation set (its first epoch's first
    batches), as many batches as the test split has.

    Training is backed up at epoch ends (`runtime.backup_every_steps`);
    rerunning a killed run resumes it (the teacher member or the student in
    training continues after its last backed-up epoch) and, with `runtime.deterministic`, ends with the
    weights of an uninterrupted run. The backups are removed once every file
    is written. Under a multi-worker strategy every worker runs this; the
    chief writes the files, the others write to scratch folders.

    Args:
        config: a `keras_kd.jobs.DistillConfig` (valid by construction).
        verbose: Keras' progress output.

    Raises:
        ConfigError: when a setting does not fit the dataset (a policy stage
            for RGB images on grayscale data, a missing generator), before
            any training.
        keras_kd.callbacks.NonFiniteLossError: when a loss turns NaN or
            infinite; the backups are kept.
    """
    job = outline.JobRun(config.runtime)
    data = data_lib.load(config.data.dataset, data_dir=config.data.data_dir)
    distill_run = _Run(config, data, job, verbose, *_policy_and_source(config, data))
    _open(distill_run)
    with job.timed("teachers_s"):
        members, teacher = teachers_lib.ensemble(config, data, job, verbose)
    control, control_record = _control(distill_run)
    with job.timed("distillation_set_s"):
        distill_set, steps_per_epoch = _distillation_set(distill_run, teacher)
    student, distiller, start, initial_weights, initial_epoch, history_path = _train_student(
        distill_run, teacher, distill_set, steps_per_epoch)
    reference, reference_record = _reference(distill_run)
    with job.timed("evaluate_s"):
        splits = _evaluate(distill_run, teacher, student, control, reference, distill_set)
    plane = None
    if config.loss_plane:
        with job.timed("loss_plane_s"):
            plane = _loss_plane(
                student, teacher, initial_weights, distill_run.distill_data, config)
    with job.timed("export_s"):
        artifacts = export.export_student(student, job.written_dir, data.vectorizer())
    artifacts.update(teachers=[member["path"] for member in members],
                     report_md=job.write_path("report.md"))
    report = {
        "config": _report_config(distill_run, distiller),
        "dataset": dataclasses.asdict(data.info),
        "splits": splits, "teacher_members": members, "control": control_record,
        "reference": reference_record,
        "artifacts": artifacts, "resumed_at_epoch": initial_epoch,
        "resume_refused": job.resume_refused or None, "student_start": start,
        "loss_plane": plane,
        "history": report_lib.read_history(history_path, config.student.epochs),
    }
    return job.write_report(report, markdown=report_lib.report_markdown)


def _open(run):
    """Opens the run's folders: its output, and the teachers', control's and reference's."""
    names = (["teachers"] + (["controls"] if run.config.control.enabled else [])
             + (["references"] if run.config.reference.enabled else []))
    run.job.open(run.folder("distill"), *(run.folder(name) for name in names))


def _control(run):
    """The control and its record, or `(None, None)` without one.

    It trains on the labeled data (the teachers'), for as many steps as
    the student's epochs over its distillation data take."""
    if not run.config.control.enabled:
        return None, None
    labeled = run.labeled_data
    epochs = control_lib.matching_epochs(
        run.config.student.epochs, run.distill_data.info.num_train, labeled.info.num_train)
    with run.job.timed("control_s"):
        return control_lib.independent_student(
            run.config, labeled, run.job.strategy, run.verbose,
            os.path.join(run.job.backup_root, "control"), epochs=epochs)


def _train_student(run, teacher, distill_set, steps_per_epoch):
    """Builds and fits the student, holding (then filling) the reference slot it
    fills for the previous seed; returns `(student, distiller, start,
    initial_weights, initial_epoch, history_path)`."""
    held = _claim_reference_slot(run)
    try:
        with run.job.timed("distill_s"):
            student, distiller, start, initial_weights = _student(run, teacher, steps_per_epoch)
            initial_epoch, history_path = _fit(run, distiller, distill_set, steps_per_epoch)
        if held is not None:
            reference_lib.publish(held, student, evaluation.fidelity_metrics(
                teacher, student, run.batched("test"), num_bins=run.config.ece_bins))
    finally:
        if held is not None:
            held.release()
    return student, distiller, start, initial_weights, initial_epoch, history_path


def _claim_reference_slot(run):
    """With a reference, the hold on the slot this run's own student fills as
    the previous seed's reference (`keras_kd.jobs.reference.claim`), or `None`.
    Across hosts a run does not publish: only the chief could write it, and
    evaluating it there alone would stall the other workers."""
    if not run.config.reference.enabled or distribute.is_multi_worker(run.job.strategy):
        return None
    own = run.config.student_only_config()
    return reference_lib.claim(own, result_key(own), run.folder("references"))


def _reference(run):
    """The paper's reference student and its record, or `(None, None)` without one."""
    if not run.config.reference.enabled:
        return None, None
    with run.job.timed("reference_s"):
        config = run.config.reference_config()
        return reference_lib.reference_student(
            config, result_key(config), run.folder("references"), run.job.strategy,
            run.verbose, distill=_run_reference)


def _run_reference(config, output_dir, verbose):
    """Runs the reference's distill job into `output_dir`; returns its report."""
    return run(dataclasses.replace(
        config, output=dataclasses.replace(config.output, directory=output_dir)), verbose)


def _distillation_set(run, teacher):
    """The batches the student is fit on, and the steps of one epoch of them."""
    config = run.config
    distill_set = data_lib.distillation_set(
        run.distill_data.train,
        run.data.info.num_classes,
        run.policy,
        batch_size=config.training.batch_size,
        seed=config.training.seed,
        teacher=teacher,
        cache=config.cache.mode,
        cached_views=config.cache.cached_views,
        cache_dir=distribute.worker_dir(run.folder("teacher_cache"), run.job.strategy),
        synthetic=run.synthetic,
        temperature=config.distillation.temperature,
        epochs=config.student.epochs,
    )
    return distill_set, data_lib.steps_per_epoch(distill_set, config.student.epochs)


def _student(run, teacher, steps_per_epoch):
    """The student, fresh or interpolated toward the teacher, in a compiled
    `Distiller`; with its fidelity at the start (or `None`) and its initial
    weights (for the loss plane, or `None`)."""
    config = run.config
    keras.utils.set_random_seed(seeds.derived_seed(config.training.seed, "student"))
    with run.job.strategy.scope():
        student = models.for_data(config.student.arch, run.data.info)
        start = _initialize_student(student, config, run.data, teacher)
        initial_weights = loss_surface.flat_weights(student) if config.loss_plane else None
        distiller = Distiller(
            teacher=teacher, student=student, loss=config.distillation.loss_object())
        distiller.compile(
            optimizer=config.student_spec().optimizer_for(
                run.data.info.num_train, steps_per_epoch
            ),
            **config.runtime.compile_settings(run.job.strategy),
        )
    return student, distiller, start, initial_weights


def _fit(run, distiller, distill_set, steps_per_epoch):
    """Fits the student, resuming a backed-up run; returns the epoch it
    resumed at and its per-epoch log."""
    config, job = run.config, run.job
    student_backup = job.backup_dir("student")
    initial_epoch = job.resume_epoch(
        student_backup, configs.training_fingerprint(config, run.data.digest))
    # The per-epoch logs live beside the backup, so a resumed run keeps them.
    history_path = os.path.join(student_backup, "history.csv")
    if initial_epoch == 0 and os.path.exists(history_path):
        os.remove(history_path)
    os.makedirs(student_backup, exist_ok=True)
    backups = training.fit_callbacks(student_backup, "the student",
                                     config.runtime.backup_every_steps)
    # NaN after an epoch left unmeasured keeps the CSV log's columns; read back as None.
    measured = callbacks_lib.curve_epochs(config.fidelity_curve, config.student.epochs)
    # Inference only: large batches make the passes cheap (a batch's last bits of KL
    # are summed in another order; the curves' points, nothing else, may differ so).
    held_out_batch = max(HELD_OUT_BATCH, config.training.batch_size)
    fidelity = callbacks_lib.FidelityCallback.for_splits(
        {split: data_lib.batched(getattr(run.data, split), held_out_batch)
         for split in ("test", "train")}, epochs=measured, missing=float("nan"))
    # In a sweep, a step traced for an earlier run of this structure trains this one.
    with trace_cache.stand_in(distiller) as kept:
        kept.fit(
            # Each epoch is fixed by (seed, epoch), so a resumed fit skips the
            # finished epochs' batches and sees the rest as they would have been.
            distill_set.skip(initial_epoch * steps_per_epoch),
            epochs=config.student.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            callbacks=[
                *fidelity,
                keras.callbacks.CSVLogger(history_path, append=True),
                *backups,
            ],
            verbose=run.verbose,
            shuffle=False,
        )
    job.timing["backup_s"] = sum(getattr(callback, "seconds", 0.0) for callback in backups)
    job.timing["fidelity_s"] = sum(callback.seconds for callback in fidelity)
    return initial_epoch, history_path


def _evaluate(run, teacher, student, control, reference, distill_set):
    """The fidelity report on `train`, `test` and a sample of the distillation
    set as large as the test split."""
    test_batches = -(-run.data.info.num_test // run.config.training.batch_size)
    splits = {
        "train": run.batched("train"),
        "test": run.batched("test"),
        "distill": distill_set.take(test_batches),
    }
    with trace_cache.stand_ins(teacher, student, control, reference) as models_in:
        teacher, student, control, reference = models_in
        return evaluation.fidelity_report(
            teacher, student, splits, num_bins=run.config.ece_bins,
            distillation=run.config.distillation, representation=True, control=control,
            reference=reference,
        )


def _report_config(run, distiller):
    """The report's `config`: every setting, and what the run resolved them to."""
    return {
        **config_lib.flat(run.config),
        "flip": run.policy.flip,
        "output_dir": run.job.output_dir,
        "teachers_dir": run.folder("teachers"),
        "controls_dir": run.folder("controls"),
        "references_dir": run.folder("references"),
        "policy_settings": run.policy.describe(run.data.info.input_shape),
        "synthetic_source": run.synthetic.description if run.synthetic else None,
        "replicas": run.job.strategy.num_replicas_in_sync,
        "jit_compiled": bool(distiller.jit_compile),
        "distillation_loss": repr(distiller.distillation_loss),
        "recipe_summary": recipes.RECIPES[run.config.recipe].summary,
    }


def _initialize_student(student, config, data, teacher):
    """Interpolates the fresh student toward the teacher, if the config asks to.

    Returns the interpolated student's fidelity where training starts from,
    `{"train": ..., "test": ...}`, or `None` for a random start.
    """
    init = config.student.initialization()
    if init.interpolation is None:
        return None
    if init.source == "teacher":
        target = teacher.members[0]
    else:
        spec = config.teacher_spec()
        target = training.initial_model(spec, data.info, training.member_seed(spec, 0))
    initialization.interpolate_weights(student, target, init.interpolation)
    batch_size = config.training.batch_size
    initialization.reestimate_batch_norm(student, data_lib.batched(data.train, batch_size))
    return {
        split: evaluation.fidelity_metrics(
            teacher, student, data_lib.batched(examples, batch_size), num_bins=config.ece_bins
        )
        for split, examples in (("train", data.train), ("test", data.test))
    }


def _loss_plane(student, teacher, initial_weights, data, config):
    """The distillation loss on the plane through the student's initial and
    final weights and its one-member teacher's, on the un-augmented
    distillation data (see `keras_kd.loss_surface`)."""
    inputs = np.concatenate([x for x, _ in data.train.batch(4096).as_numpy_iterator()])
    member = teacher.members[0]
    teacher_logits = member.predict(inputs, batch_size=1024, verbose=0)
    final = loss_surface.flat_weights(student)
    return loss_surface.loss_plane(
        student, initial_weights, final, loss_surface.flat_weights(member), inputs,
        teacher_logits, config.distillation.temperature, resolution=config.loss_plane,
    )


def _check_generator_record(path, data):
    """Refuses a generator that changed since the GAN job wrote it, or that was
    trained on other data (when the job's record, `generator.json`, is there)."""
    record_path = os.path.splitext(path)[0] + ".json"
    if not os.path.isfile(record_path):
        return  # a generator of the user's own
    with open(record_path) as f:
        record = json.load(f)
    fix = f"train it again: `python -m launch.train_gan --dataset={data.info.name}`"
    if digests.file_digest(path) != record.get("sha256"):
        raise ConfigError(
            f"The generator at {path!r} differs from the file its record {record_path!r} "
            f"describes: it is damaged. Delete both and {fix}."
        )
    if record.get("data_digest") != data.digest:
        raise ConfigError(
            f"The generator at {path!r} was trained on other data than dataset "
            f"{data.info.name!r} holds now; {fix}."
        )


def _out_of_distribution_source(config, data):
    """The `ood` stage's source: the training inputs of another dataset."""
    name = config.distillation_set.ood_dataset_for(data.info.name)
    if name is None:
        raise ConfigError(
            f"Policy {config.distillation_set.policy!r} draws out-of-distribution inputs, "
            f"and dataset {data.info.name!r} has no default source of them; name one "
            "with --ood_dataset (a dataset of the same input shape)."
        )
    other = data_lib.load(name, data_dir=config.data.data_dir)
    if tuple(other.info.input_shape) != tuple(data.info.input_shape):
        raise ConfigError(
            f"The ood dataset {name!r} has inputs of shape {tuple(other.info.input_shape)}; "
            f"dataset {data.info.name!r} has inputs of shape {tuple(data.info.input_shape)}."
        )
    inputs = np.concatenate([x for x, _ in other.train.batch(4096).as_numpy_iterator()])
    source = data_lib.SyntheticSource.from_inputs(inputs)
    source.description = f"training inputs of {name}"
    return source


def _policy_and_source(config, data):
    """The run's policy, checked against the data, and its synthetic source."""
    info = data.info
    outline.check_models_fit(info, teacher_arch=config.teacher.arch,
                             student_arch=config.student.arch)
    policy = config.distillation_set.resolve(info.name)
    try:
        policy.validate(info.input_shape, info.kind)
        training.training_augmentation(config.teacher.augment, info.name).validate(
            info.input_shape, info.kind)
    except ValueError as error:
        raise ConfigError(f"Dataset {info.name!r}: {error}") from None
    if not policy.uses_synthetic:
        return policy, None
    if policy.synthetic_stage == "ood":
        return policy, _out_of_distribution_source(config, data)
    path = folders.path(config, info.slug, "generator")
    if not os.path.exists(path):
        raise ConfigError(
            f"Policy {policy.name!r} samples a generator, but there is none at "
            f"{path!r}. Train one with `python -m launch.train_gan "
            f"--dataset={info.name}`, or pass the path of a Keras generator "
            "(generator=... / --generator)."
        )
    _check_generator_record(path, data)
    try:
        generator = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many kinds on a damaged file
        raise ConfigError(
            f"The generator at {path!r} cannot be loaded ({type(error).__name__}: "
            f"{str(error)[:200]}); it is damaged or not a Keras model. Delete it and "
            f"train it again: `python -m launch.train_gan --dataset={info.name}`."
        ) from None
    source = data_lib.SyntheticSource.from_generator(generator)
    if source.input_shape != tuple(info.input_shape):
        raise ConfigError(
            f"The generator at {path!r} makes inputs of shape {source.input_shape}; "
            f"dataset {info.name!r} has inputs of shape {tuple(info.input_shape)}."
        )
    return policy, source
