"""The main job: train a teacher ensemble, distill a student, report fidelity.

`run(DistillConfig(...))` is what `python -m launch.distill` does; call it
from a notebook or a sweep to get the same run and the same files.
"""

import csv
import dataclasses
import os
import shutil
import time

import keras

from keras_kd import callbacks as callbacks_lib
from keras_kd import data as data_lib
from keras_kd import distribute
from keras_kd import evaluation
from keras_kd import export
from keras_kd import initialization
from keras_kd import models
from keras_kd import training
from keras_kd.distiller import Distiller
from keras_kd.distiller import check_hyperparameters
from keras_kd.ensemble import Ensemble
from keras_kd.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run depends on.

    Defaults follow the study (pure distillation, `alpha=0`, at temperature 4,
    from a 3-member ensemble) at a scale that runs in minutes on a CPU.

    The distillation set is built by `keras_kd.data.distillation_set` from
    `policy` and its settings (`flip=None` flips unless the dataset is of
    digits); `teacher_cache`, `cached_views` and `cache_dir` (default
    `<saved_models_dir>/<dataset>/teacher_cache`) control teacher-output
    caching. The `gan` stage samples the Keras generator at `generator`
    (default `<saved_models_dir>/<dataset>/gan/generator.keras`).

    `student_init` is `"random"` or `"interpolate:LAMBDA"`: the student
    starts at `LAMBDA * target + (1 - LAMBDA) * random_init`, where the
    target (`student_init_from`) is the teacher's trained weights
    (`"teacher"`) or the weights it was initialized with (`"teacher_init"`);
    this needs a one-member teacher of the student's architecture, and the
    student's BatchNormalization statistics are re-estimated on the training
    split after interpolating.

    `runtime` (a `keras_kd.runtime.Runtime`) sets the strategy, precision,
    XLA and determinism of every fit, and the backup folder (default
    `<output_dir>/backup`) from which a rerun of the same run resumes.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    teacher_arch: str = "resnet20"
    members: int = 3
    teacher_epochs: int = 15
    teacher_optimizer: str | None = None
    teacher_lr: float | None = None
    student_arch: str = "resnet8"
    student_init: str = "random"
    student_init_from: str = "teacher"
    alpha: float = 0.0
    temperature: float = 4.0
    epochs: int = 30
    policy: str = "identity"
    flip: bool | None = None
    mixup_alpha: float = 1.0
    mixup_portion: float = 1.0
    synthetic_fraction: float = 0.5
    synthetic_temperature: float | None = None
    generator: str | None = None
    teacher_cache: str = "auto"
    cached_views: int = 0
    cache_dir: str | None = None
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    output_dir: str | None = None
    teachers_dir: str | None = None
    saved_models_dir: str = "saved_models"
    runtime: Runtime = dataclasses.field(default_factory=Runtime)

    def teacher_spec(self):
        """How each teacher member is trained (`teacher_optimizer` and
        `teacher_lr` default to the student's `optimizer` and `lr`)."""
        return training.ClassifierSpec(
            arch=self.teacher_arch,
            epochs=self.teacher_epochs,
            batch_size=self.batch_size,
            optimizer=self.teacher_optimizer or self.optimizer,
            lr=self.lr if self.teacher_lr is None else self.teacher_lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )

    def student_spec(self):
        """The student's training settings."""
        return dataclasses.replace(
            self.teacher_spec(), arch=self.student_arch, epochs=self.epochs,
            optimizer=self.optimizer, lr=self.lr,
        )

    def validate(self):
        """Raises a ValueError naming the first bad setting, before any work."""
        self.teacher_spec().validate()
        self.student_spec().validate()
        if not isinstance(self.members, int) or self.members < 1:
            raise ValueError(f"members must be a positive integer; got {self.members!r}.")
        check_hyperparameters(self.alpha, self.temperature)
        init = self.initialization()
        if init.interpolation is not None and (
            self.student_arch != self.teacher_arch or self.members != 1
        ):
            raise ValueError(
                f"student_init={self.student_init!r} interpolates toward the teacher's "
                "weights, so it needs a one-member teacher of the student's architecture; "
                f"got members={self.members}, teacher_arch={self.teacher_arch!r}, "
                f"student_arch={self.student_arch!r}."
            )
        self.runtime.validate()
        policy = self.policy_for(self.dataset)
        data_lib.check_cache_request(policy, self.teacher_cache, self.cached_views)

    def initialization(self):
        """The validated `keras_kd.initialization.StudentInit`."""
        return initialization.StudentInit.parse(self.student_init, self.student_init_from)

    def policy_for(self, dataset_name):
        """The validated `keras_kd.data.Policy`, `flip` resolved for the dataset."""
        flip = self.flip if self.flip is not None else data_lib.default_flip(dataset_name)
        return data_lib.Policy.parse(
            self.policy,
            flip=flip,
            mixup_alpha=self.mixup_alpha,
            mixup_portion=self.mixup_portion,
            synthetic_fraction=self.synthetic_fraction,
            synthetic_temperature=self.synthetic_temperature,
        )

    def resolved_dirs(self, dataset_slug):
        """The (output_dir, teachers_dir) of this run, defaults filled in."""
        root = os.path.join(self.saved_models_dir, dataset_slug)
        run_name = (
            f"{self.student_arch}_from_{self.members}x{self.teacher_arch}"
            f"_T{self.temperature:g}_a{self.alpha:g}_s{self.seed}"
        )
        if self.policy != "identity":
            run_name += f"_{self.policy}"
        if self.cached_views:
            run_name += f"_views{self.cached_views}"
        if self.initialization().interpolation is not None:
            run_name += f"_init{self.student_init.replace(':', '')}-{self.student_init_from}"
        output_dir = self.output_dir or os.path.join(root, "distill", run_name)
        teachers_dir = self.teachers_dir or os.path.join(root, "teachers")
        return output_dir, teachers_dir

    def resolved_cache_dir(self, dataset_slug):
        """Where disk caches of teacher outputs go."""
        return self.cache_dir or os.path.join(
            self.saved_models_dir, dataset_slug, "teacher_cache"
        )

    def resolved_generator(self, dataset_slug):
        """The generator file the `gan` stage samples."""
        return self.generator or os.path.join(
            self.saved_models_dir, dataset_slug, "gan", "generator.keras"
        )


class ConfigError(ValueError):
    """A setting that does not fit the dataset, found before any training."""


def run(config, verbose="auto"):
    """Runs the main job and writes its files; returns the report.

    Writes `<output_dir>/report.json` (`{"config", "dataset", "splits",
    "teacher_members", "artifacts", "timing", "resumed_at_epoch",
    "history", "student_start"}`: `history` holds the per-epoch logs,
    fidelity on the train and test splits included; `student_start` the
    test fidelity of an interpolated student before training),
    `<output_dir>/report.md`, and the student as `<output_dir>/saved_model`
    and `<output_dir>/student.keras`. Teachers are reused from (or saved to)
    `<teachers_dir>`. Fidelity is reported on the `train` split (as it is,
    un-augmented), the `test` split, and `distill`: a sample of the
    distillation set (its first epoch's first batches), as many batches as
    the test split has.

    Training is backed up at each epoch's end; rerunning a killed run resumes
    it (the teacher member or the student in training continues after its
    last finished epoch) and, with `runtime.deterministic`, ends with the
    weights of an uninterrupted run. The backups are removed once every file
    is written. Under a multi-worker strategy every worker runs this; the
    chief writes the files, the others write to scratch folders.

    Raises:
        ConfigError: when a setting does not fit the dataset (a policy stage
            for RGB images on grayscale data, a missing generator), before
            any training.
        keras_kd.callbacks.NonFiniteLossError: when a loss turns NaN or
            infinite; the backups are kept.
    """
    config.validate()
    strategy = config.runtime.start()
    data = data_lib.load(config.dataset, data_dir=config.data_dir)
    policy, synthetic = _policy_and_source(config, data.info)
    output_dir, teachers_dir = config.resolved_dirs(data.info.slug)
    backup_dir = config.runtime.resolved_backup_dir(output_dir)
    timing = {}

    started = time.perf_counter()
    members = training.ensemble_members(
        config.teacher_spec(), data, config.members, teachers_dir, verbose,
        config.runtime, os.path.join(backup_dir, "teachers"),
    )
    with strategy.scope():
        teacher = Ensemble([member["path"] for member in members])
    timing["teachers_s"] = time.perf_counter() - started

    started = time.perf_counter()
    distill_set = data_lib.distillation_set(
        data.train,
        data.info.num_classes,
        policy,
        batch_size=config.batch_size,
        seed=config.seed,
        teacher=teacher,
        cache=config.teacher_cache,
        cached_views=config.cached_views,
        cache_dir=distribute.worker_dir(config.resolved_cache_dir(data.info.slug), strategy),
        synthetic=synthetic,
        temperature=config.temperature,
        epochs=config.epochs,
    )
    steps_per_epoch = data_lib.steps_per_epoch(distill_set, config.epochs)
    timing["distillation_set_s"] = time.perf_counter() - started

    started = time.perf_counter()
    student_backup = distribute.worker_backup_dir(os.path.join(backup_dir, "student"), strategy)
    initial_epoch = training.resume_epoch(student_backup, strategy)
    # The per-epoch logs live beside the backup, so a resumed run keeps them.
    history_path = os.path.join(student_backup, "history.csv")
    if initial_epoch == 0 and os.path.exists(history_path):
        os.remove(history_path)
    os.makedirs(student_backup, exist_ok=True)
    keras.utils.set_random_seed(training.derived_seed(config.seed, "student"))
    with strategy.scope():
        student = models.get(config.student_arch, data.info.input_shape, data.info.num_classes)
        start = _initialize_student(student, config, data, teacher)
        distiller = Distiller(
            student, teacher, alpha=config.alpha, temperature=config.temperature
        )
        distiller.compile(
            optimizer=config.student_spec().optimizer_for(data.info.num_train, steps_per_epoch),
            **config.runtime.compile_settings(strategy),
        )
    distiller.fit(
        # Each epoch is fixed by (seed, epoch), so a resumed fit skips the
        # finished epochs' batches and sees the rest as they would have been.
        distill_set.skip(initial_epoch * steps_per_epoch),
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        callbacks=[
            callbacks_lib.FidelityCallback(data_lib.batched(data.test, config.batch_size), "test"),
            callbacks_lib.FidelityCallback(
                data_lib.batched(data.train, config.batch_size), "train"
            ),
            keras.callbacks.CSVLogger(history_path, append=True),
            *training.fit_callbacks(student_backup, "the student"),
        ],
        verbose=verbose,
        shuffle=False,
    )
    timing["distill_s"] = time.perf_counter() - started

    started = time.perf_counter()
    test_batches = -(-data.info.num_test // config.batch_size)
    splits = {
        "train": data_lib.batched(data.train, config.batch_size),
        "test": data_lib.batched(data.test, config.batch_size),
        "distill": distill_set.take(test_batches),
    }
    split_metrics = evaluation.fidelity_report(
        teacher, student, splits, distillation=(config.alpha, config.temperature),
        representation=True,
    )
    timing["evaluate_s"] = time.perf_counter() - started

    written_dir = distribute.worker_dir(output_dir, strategy)
    artifacts = export.export_student(student, written_dir)
    artifacts["teachers"] = [member["path"] for member in members]
    artifacts["report_md"] = os.path.join(written_dir, "report.md")
    report = {
        "config": {
            **dataclasses.asdict(config),
            "flip": policy.flip,
            "output_dir": output_dir,
            "teachers_dir": teachers_dir,
            "policy_settings": policy.describe(data.info.input_shape),
            "synthetic_source": synthetic.description if synthetic else None,
            "replicas": strategy.num_replicas_in_sync,
            "jit_compiled": bool(distiller.jit_compile),
        },
        "dataset": dataclasses.asdict(data.info),
        "splits": split_metrics,
        "teacher_members": members,
        "artifacts": artifacts,
        "timing": timing,
        "resumed_at_epoch": initial_epoch,
        "student_start": {"test": start} if start else None,
        "history": read_history(history_path, config.epochs),
    }
    export.write_text(report_markdown(report), artifacts["report_md"])
    export.write_json(report, os.path.join(written_dir, "report.json"))
    # Everything is written: the backups have nothing left to protect.
    shutil.rmtree(student_backup if not distribute.is_chief(strategy) else backup_dir,
                  ignore_errors=True)
    distribute.cleanup_worker_dirs()
    return report


def _initialize_student(student, config, data, teacher):
    """Interpolates the fresh student toward the teacher, if the config asks to.

    Returns the interpolated student's fidelity on the test split (where
    training starts from), or `None` for a random start.
    """
    init = config.initialization()
    if init.interpolation is None:
        return None
    if init.source == "teacher":
        target = teacher.members[0]
    else:
        spec = config.teacher_spec()
        target = training.initial_model(spec, data.info, training.member_seed(spec, 0))
    initialization.interpolate_weights(student, target, init.interpolation)
    initialization.reestimate_batch_norm(
        student, data_lib.batched(data.train, config.batch_size)
    )
    return evaluation.fidelity_metrics(
        teacher, student, data_lib.batched(data.test, config.batch_size)
    )


def read_history(path, epochs):
    """The per-epoch logs a run's CSVLogger wrote, as `{name: [value per epoch]}`.

    An epoch logged twice (a run killed after logging it but before its
    backup repeats it) keeps its last row. A value missing from an epoch's
    row is `None`, so every list has one entry per epoch.
    """
    if not os.path.exists(path):
        return {}
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = row
    kept = sorted(rows)[:epochs]
    names = [name for name in rows[kept[0]] if name != "epoch"] if kept else []
    history = {
        name: [
            None if rows[epoch].get(name) in (None, "", "NA") else float(rows[epoch][name])
            for epoch in kept
        ]
        for name in names
    }
    history["epoch"] = [epoch + 1 for epoch in kept]
    return history


def _policy_and_source(config, info):
    """The run's policy, checked against the data, and its synthetic source."""
    policy = config.policy_for(info.name)
    try:
        policy.validate(info.input_shape)
    except ValueError as error:
        raise ConfigError(f"Dataset {info.name!r}: {error}") from None
    if not policy.uses_synthetic:
        return policy, None
    path = config.resolved_generator(info.slug)
    if not os.path.exists(path):
        raise ConfigError(
            f"Policy {policy.name!r} samples a generator, but there is none at "
            f"{path!r}. Train one with `python -m launch.train_gan "
            f"--dataset={info.name}`, or pass the path of a Keras generator "
            "(generator=... / --generator)."
        )
    generator = keras.saving.load_model(path, compile=False)
    source = data_lib.SyntheticSource.from_generator(generator)
    if source.input_shape != tuple(info.input_shape):
        raise ConfigError(
            f"The generator at {path!r} makes inputs of shape {source.input_shape}; "
            f"dataset {info.name!r} has inputs of shape {tuple(info.input_shape)}."
        )
    return policy, source


def report_markdown(report):
    """The report as Markdown: the run, the fidelity table, the files."""
    config = report["config"]
    lines = [
        f"# Distillation report: {config['dataset']}",
        "",
        f"Student `{config['student_arch']}` distilled from a "
        f"{config['members']}-member `{config['teacher_arch']}` ensemble "
        f"(alpha={config['alpha']:g}, temperature={config['temperature']:g}, "
        f"{config['epochs']} epochs, seed {config['seed']}), on the "
        f"`{config['policy']}` distillation set.",
        "",
        evaluation.markdown_table(report["splits"]),
        "",
        "Agreement and predictive KL (nats) compare the student with the teacher "
        "at temperature 1; ECE is each model's calibration against labels. "
        "`train` is the training split as it is; `distill` is a sample of the "
        "distillation set the student was fit on (accuracy and ECE over its "
        "labeled examples, against mixed labels where the policy mixes). "
        "linear_cka is the linear CKA of the teacher's and the student's "
        "penultimate features; distillation_loss is the loss the student "
        "minimized (at the run's alpha and temperature).",
        "",
        f"Student: `{report['artifacts']['saved_model']}` (SavedModel), "
        f"`{report['artifacts']['keras']}` (Keras).",
    ]
    return "\n".join(lines) + "\n"
