"""The configs of the jobs: distill, teachers, GAN. Every default is written here once.

Each config is a tree of frozen `keras_kd.config.Config` dataclasses,
validated when built. The apps in `launch/` derive their flags from these
declarations; the flag of a setting is given where it differs from the field.

Example:

>>> config = DistillConfig(distillation=Distillation(alpha=0.5))
>>> config.distillation.alpha, config.teacher.arch
(0.5, 'resnet20')
>>> keras_kd.config.override(config, {"temperature": 2.0, "members": 5}).teacher.members
5
"""

import dataclasses

from keras_kd import callbacks as callbacks_lib
from keras_kd import config as config_lib
from keras_kd import digests
from keras_kd import data as data_lib
from keras_kd import initialization
from keras_kd import losses
from keras_kd.jobs import recipes
from keras_kd import models
from keras_kd import training as training_lib
from keras_kd.config import Config
from keras_kd.config import group
from keras_kd.config import like
from keras_kd.config import setting
from keras_kd.runtime import Runtime
from keras_kd import seeds
from keras_kd.optimizers import OPTIMIZERS
from keras_kd.training import ClassifierSpec
from keras_kd.training import Training
from keras_kd.version import __version__


@dataclasses.dataclass(frozen=True)
class Data(Config):
    """Which dataset a job runs on."""

    dataset: str = setting(
        "digits", "Dataset: 'digits' (bundled 8x8 images), 'mnist1d' (generated signals; "
        "settings in the name: mnist1d:num_train=1000,...), 'tfds:<name>' or 'npz:<path>'."
    )
    data_dir: str | None = setting(None, "TFDS data folder (TFDS' default if unset).",
                                   shapes_result=False)

    def check(self):
        data_lib.check_name(self.dataset)


@dataclasses.dataclass(frozen=True)
class Teacher(Config):
    """The teacher ensemble: how each member is trained, and where members live."""

    arch: str = like(ClassifierSpec, "arch", help="Teacher member architecture.",
                     flag="teacher_arch")
    members: int = setting(3, "Teacher ensemble size.", lower=1)
    epochs: int = like(ClassifierSpec, "epochs", help="Epochs per teacher member.",
                       flag="teacher_epochs")
    optimizer: str | None = setting(
        None, "Optimizer of the teacher members (default: --optimizer).",
        flag="teacher_optimizer", choices=OPTIMIZERS,
    )
    lr: float | None = setting(
        None, "Learning rate of the teacher members (default: --lr).", flag="teacher_lr",
        above=0.0,
    )
    batch_size: int | None = setting(
        None, "Batch size of the teacher members (default: --batch_size).",
        flag="teacher_batch_size", lower=1,
    )
    weight_decay: float | None = setting(
        None, "Weight decay of the teacher members (default: --weight_decay; of the "
        "kind --weight_decay_type says).", flag="teacher_weight_decay", lower=0.0,
    )
    augment: str = like(
        ClassifierSpec, "augment", help="Augmentation the teacher members are trained "
        "with: label-keeping policy stages joined with '+' (shift on signals, crop_flip "
        "on images).", flag="teacher_augment",
    )
    data_fraction: float = setting(
        1.0, "Share of the training split the members are trained on: its first "
        "examples (D0 of the data-recycling experiment).", flag="teacher_data_fraction",
        above=0.0, upper=1.0,
    )
    directory: str | None = setting(
        None, "Folder of teacher members to reuse or fill "
        "(default <saved_models_dir>/<dataset>/teachers).", flag="teachers_dir",
        shapes_result=False,
    )

    def check(self):
        models.check_name(self.arch)
        training_lib.training_augmentation(self.augment)

    def spec(self, training):
        """The members' `ClassifierSpec`, unset settings taken from `training`."""
        return ClassifierSpec(
            arch=self.arch,
            epochs=self.epochs,
            batch_size=self.batch_size or training.batch_size,
            optimizer=self.optimizer or training.optimizer,
            lr=training.lr if self.lr is None else self.lr,
            weight_decay=(training.weight_decay if self.weight_decay is None
                          else self.weight_decay),
            weight_decay_type=training.weight_decay_type,
            seed=training.seed,
            augment=self.augment,
        )


@dataclasses.dataclass(frozen=True)
class Student(Config):
    """The student: its architecture, its epochs and where it starts."""

    arch: str = setting("resnet8", "Student architecture.", flag="student_arch")
    epochs: int = setting(30, "Distillation epochs.", lower=1)
    init: str = setting(
        "random", "Student initialization: random, or interpolate:LAMBDA for LAMBDA * "
        "target + (1 - LAMBDA) * random (needs --members=1 and --student_arch=--teacher_arch).",
        flag="student_init",
    )
    init_from: str = setting(
        "teacher", "Target of --student_init=interpolate: the teacher's trained weights, or "
        "the weights it was initialized with.", flag="student_init_from",
        choices=("teacher", "teacher_init"),
    )
    init_scales_lr: bool = setting(
        False, "With --student_init=interpolate:LAMBDA, scale the student's learning rate "
        "by (1 - LAMBDA), as the study's code does, so a start near the target is not "
        "thrown away by large first steps.", flag="init_scales_lr",
    )

    def check(self):
        models.check_name(self.arch)
        interpolation = self.initialization().interpolation
        if self.init_scales_lr and interpolation == 1.0:
            raise ValueError(
                f"init_scales_lr with student_init={self.init!r} scales the learning rate "
                "to 0, so nothing would train; use LAMBDA < 1, or no --init_scales_lr."
            )

    def lr_scale(self):
        """The factor on the student's learning rate: `1 - LAMBDA` with
        `init_scales_lr`, else 1."""
        interpolation = self.initialization().interpolation
        return 1.0 - interpolation if self.init_scales_lr and interpolation else 1.0

    def initialization(self):
        """The validated `keras_kd.initialization.StudentInit`."""
        return initialization.StudentInit.parse(self.init, self.init_from)


@dataclasses.dataclass(frozen=True)
class Control(Config):
    """The control: an independently trained student (the paper's section 3.2).

    It has the student's architecture and training budget (epochs, batch,
    optimizer, learning rate) and is trained on the hard labels alone from a
    seed of its own; its agreement with the teacher is what the distilled
    student's is read against. Trained once per dataset, architecture, seed
    and budget, and reused like teacher members.
    """

    enabled: bool = setting(
        True, "Train (or reuse) an independent student of the student's architecture and "
        "budget, and report its agreement and KL with the teacher beside the student's.",
        flag="control",
    )
    directory: str | None = setting(
        None, "Folder of independent students to reuse or fill "
        "(default <saved_models_dir>/<dataset>/controls).", flag="controls_dir",
        shapes_result=False,
    )


@dataclasses.dataclass(frozen=True)
class Reference(Config):
    """The paper's reference (section 3.2): a student distilled by the
    identical procedure from an independent teacher.

    The independent teacher is the ensemble the same recipe trains from the
    next seed (`training.seed + 1`), so in a sweep over seeds it is another
    run's teacher, trained once. The reference student is that seed's
    student: a run with a reference publishes its own student as the
    reference of the previous seed, so a sweep over seeds distills only the
    last seed's reference; otherwise it is distilled (without control or
    reference of its own) and reused by key. Its agreement with *this* run's
    teacher is what two students of one procedure share without sharing a
    teacher.
    """

    enabled: bool = setting(
        False, "Distill (or reuse) the paper's reference: a student distilled identically "
        "from an independent teacher (the same recipe at the next seed), and report its "
        "agreement and KL with this run's teacher beside the student's.", flag="reference",
    )
    directory: str | None = setting(
        None, "Folder of reference students to reuse or fill "
        "(default <saved_models_dir>/<dataset>/references).", flag="references_dir",
        shapes_result=False,
    )


@dataclasses.dataclass(frozen=True)
class Distillation(Config):
    """The loss: by default `alpha * CE + (1 - alpha) * T^2 * KL` at temperature T."""

    loss: str = setting(
        "kl", "Distillation loss, a name registered in keras_kd.losses.LOSSES: kl (alpha * "
        "CE + (1 - alpha) * T^2 * KL(teacher || student)), reverse_kl (KL(student || "
        "teacher)) or logit_mse (mean squared error of the logits; T has no effect).",
    )
    alpha: float = setting(
        0.0, "Weight of the hard-label loss; 0 is pure distillation.", lower=0.0, upper=1.0
    )
    temperature: float = setting(4.0, "Distillation temperature (> 0).", above=0.0)

    def check(self):
        losses.check_name(self.loss)

    def loss_object(self):
        """The `keras_kd.losses.DistillationLoss` these settings name."""
        return losses.get(self.loss, alpha=self.alpha, temperature=self.temperature)


@dataclasses.dataclass(frozen=True)
class DistillationSet(data_lib.StageSettings):
    """How the distillation set is built from the training split (see `keras_kd.data`).

    The stages' own settings (`mixup_alpha`, `noise_std`, ...) are
    `keras_kd.data.StageSettings`' fields, declared there once.
    """

    policy: str = setting(
        "identity", "Distillation-set policy: registered stages joined with '+' "
        "(see keras_kd.data.STAGES; e.g. crop_flip+mixup).",
    )
    flip: str = setting(
        "auto", "Horizontal flip in crop_flip; auto: on, except for digit datasets.",
        choices=("auto", "on", "off"),
    )
    data: str = setting(
        "all", "Examples the distillation set is drawn from: the whole training split "
        "(all), only those the teachers were trained on (teacher), or only those they "
        "never saw (fresh; the last 1 - --teacher_data_fraction of the split). teacher "
        "and fresh differ from all with --teacher_data_fraction < 1.", flag="distill_data",
        choices=("all", "teacher", "fresh"),
    )
    generator: str | None = setting(
        None, "Keras generator file for the gan stage "
        "(default <saved_models_dir>/<dataset>/gan/generator.keras).",
    )
    ood_dataset: str | None = setting(
        None, "Dataset whose training inputs the ood stage draws (same input shape; "
        "default for mnist1d: the same dataset with its sequences shuffled).",
    )

    def check(self):
        self.resolve("digits")
        if self.ood_dataset is not None:
            data_lib.check_name(self.ood_dataset)

    def ood_dataset_for(self, dataset_name):
        """The dataset the `ood` stage draws from, its default resolved, or `None`
        where there is no default (datasets other than MNIST-1D)."""
        if self.ood_dataset is not None:
            return self.ood_dataset
        return data_lib.default_ood_dataset(dataset_name)

    def resolve(self, dataset_name):
        """The `keras_kd.data.Policy`, `flip=auto` resolved for the dataset."""
        flip = {"on": True, "off": False}.get(self.flip)
        if flip is None:
            flip = data_lib.default_flip(dataset_name)
        return data_lib.Policy.parse(
            self.policy, flip=flip, **data_lib.stage_settings(self)
        )


@dataclasses.dataclass(frozen=True)
class Cache(Config):
    """Teacher-output caching."""

    mode: str = setting(
        "auto", "Teacher-output caching: auto caches static policies (on disk) and "
        "--cached_views (in memory when it fits); off calls the teacher every step.",
        flag="teacher_cache", choices=data_lib.CACHE_MODES,
    )
    cached_views: int = setting(
        0, "Pre-sample this many augmented copies of the training set and cache their "
        "teacher outputs (stochastic policies); 0: draw fresh every epoch.", lower=0,
    )
    directory: str | None = setting(
        None, "Folder of disk caches (default <saved_models_dir>/<dataset>/teacher_cache).",
        flag="cache_dir", shapes_result=False,
    )


@dataclasses.dataclass(frozen=True)
class Output(Config):
    """Where a job writes."""

    directory: str | None = setting(
        None, "Run folder (default under <saved_models_dir>/<dataset>/).", flag="output_dir",
        shapes_result=False,
    )
    saved_models_dir: str = setting("saved_models", "Root of the default output folders.",
                                    shapes_result=False)


@dataclasses.dataclass(frozen=True)
class DistillConfig(Config):
    """Everything the distill job (`keras_kd.jobs.distill`) depends on.

    Defaults follow the study (pure distillation, `alpha=0`, at temperature 4,
    from a 3-member ensemble) at a scale that runs in minutes on a CPU.
    `student.init="interpolate:LAMBDA"` starts the student at `LAMBDA *
    target + (1 - LAMBDA) * random_init` (the target, `student.init_from`, is
    the teacher's trained or initial weights) and needs a one-member teacher
    of the student's architecture.
    """

    data: Data = group(Data)
    teacher: Teacher = group(Teacher)
    student: Student = group(Student)
    control: Control = group(Control)
    reference: Reference = group(Reference)
    training: Training = group(Training)
    distillation: Distillation = group(Distillation)
    distillation_set: DistillationSet = group(DistillationSet)
    cache: Cache = group(Cache)
    output: Output = group(Output)
    runtime: Runtime = group(Runtime)
    ece_bins: int = setting(
        15, "Equal-width confidence bins of the calibration error (ECE) in the report.", lower=1
    )
    fidelity_curve: str = setting(
        "log", "Epochs the per-epoch train and test fidelity curves are measured after: log "
        "(1, 2, 4, 8, ... and the last: a point per doubling), all (every epoch: two passes "
        "over both splits after each) or every:K (every K-th and the last).",
    )
    loss_plane: int = setting(
        0, "Grid points per axis of the distillation loss on the plane through the "
        "student's initial and final weights and the teacher's (0: none; needs a "
        "one-member teacher of the student's architecture).", lower=0,
    )
    recipe: str = setting(
        "plain", "Recipe applied over the other settings (keras_kd.jobs.recipes): plain, "
        "function_matching (mixup views, teacher on each), patient (4x the epochs on 32 "
        "cached views), patient_function_matching, logit_matching (loss=logit_mse).",
        shapes_result=False, preset=True,
    )
    recipe_budget: str = setting(
        "own", "Epochs under --recipe: own (the recipe's multiple of --epochs) or equal "
        "(--epochs as given: plain distillation's optimizer steps).", choices=("own", "equal"),
        shapes_result=False, preset=True,
    )

    def apply_presets(self, presets):
        """This config with the recipe in `presets` (`recipe`, `recipe_budget`) applied."""
        return recipes.apply(self, presets.get("recipe", self.recipe),
                             presets.get("recipe_budget", self.recipe_budget))

    def check(self):
        recipes.check_name(self.recipe)
        callbacks_lib.curve_epochs(self.fidelity_curve, self.student.epochs)
        self.teacher_spec()  # validated when built: the members' optimizer and decay
        if self.distillation_set.data == "fresh" and self.teacher.data_fraction == 1.0:
            raise ValueError(
                "distill_data='fresh' distills on the examples the teachers never saw, and "
                "with teacher_data_fraction=1.0 they saw all; set teacher_data_fraction < 1.")
        policy = self.distillation_set.resolve(self.data.dataset)
        data_lib.check_cache_request(policy, self.cache.mode, self.cache.cached_views)
        same_weights = self.student.arch == self.teacher.arch and self.teacher.members == 1
        if self.student.initialization().interpolation is not None and not same_weights:
            raise ValueError(
                f"student_init={self.student.init!r} interpolates toward the teacher's "
                "weights, so it needs a one-member teacher of the student's architecture; "
                f"got members={self.teacher.members}, teacher_arch={self.teacher.arch!r}, "
                f"student_arch={self.student.arch!r}."
            )
        if self.loss_plane == 1:
            raise ValueError("loss_plane is 0 (none) or a grid of >= 2 points per axis; got 1.")
        if self.loss_plane and self.distillation.loss != "kl":
            raise ValueError(
                f"loss_plane={self.loss_plane} draws the study's T^2 * KL on the plane; got "
                f"loss={self.distillation.loss!r}: use loss=kl, or loss_plane=0.")
        if self.loss_plane and not same_weights:
            raise ValueError(
                f"loss_plane={self.loss_plane} draws the plane through the student's and "
                "the teacher's weights, so it needs a one-member teacher of the student's "
                f"architecture; got members={self.teacher.members}, "
                f"teacher_arch={self.teacher.arch!r}, student_arch={self.student.arch!r}."
            )

    def teacher_spec(self):
        """How each teacher member is trained."""
        return self.teacher.spec(self.training)

    def student_spec(self):
        """The student's training settings."""
        return dataclasses.replace(
            self.teacher_spec(), arch=self.student.arch, epochs=self.student.epochs,
            batch_size=self.training.batch_size, optimizer=self.training.optimizer,
            lr=self.training.lr * self.student.lr_scale(),
            weight_decay=self.training.weight_decay,
        )

    def control_spec(self, epochs=None):
        """How the control is trained: the student's settings (its learning rate
        unscaled; `epochs`, default the student's), labels only, with the
        members' augmentation, from a seed derived from `training.seed` for it alone."""
        return dataclasses.replace(
            self.student_spec(), lr=self.training.lr,
            epochs=epochs or self.student.epochs,
            seed=seeds.derived_seed(self.training.seed, "control"),
        )

    def student_only_config(self, seed=None):
        """This run's student alone: the same settings (at `seed`, if given)
        with no control, reference, loss plane, fidelity curve or output
        folder of its own, none of which changes how the student trains. Two
        runs whose student-only configs share a result key train the same
        student, so one run's student serves as another's reference."""
        seed = self.training.seed if seed is None else seed
        return dataclasses.replace(
            self,
            training=dataclasses.replace(self.training, seed=seed),
            control=dataclasses.replace(self.control, enabled=False),
            reference=dataclasses.replace(self.reference, enabled=False),
            output=dataclasses.replace(self.output, directory=None),
            loss_plane=0, fidelity_curve=f"every:{self.student.epochs}",
        )

    def reference_config(self):
        """The distill config of this run's reference student (see `Reference`):
        the student-only config (`student_only_config`) at the next seed."""
        return self.student_only_config(seed=(self.training.seed + 1) % 2**31)

    def training_epochs(self):
        """The epochs of training a run does when it reuses nothing: each
        teacher member's, the control's, the student's and (with a reference)
        the reference's teacher members' and student's. What a sweep of
        several workers orders its runs by (`keras_kd.experiments.run_sweep`'s
        `cost`), so that the last runs to start are the short ones."""
        student = self.teacher.members * self.teacher_spec().epochs + self.student.epochs
        return (student + self.control.enabled * self.control_spec().epochs
                + self.reference.enabled * student)

    def run_name(self):
        """The default run folder's name: the main settings, readable, then a
        short hash of every setting that shapes the run (`config_hash`), so
        runs that differ in any such setting never share a folder."""
        name = (
            f"{self.student.arch}_from_{self.teacher.members}x{self.teacher.arch}"
            f"_T{self.distillation.temperature:g}_a{self.distillation.alpha:g}"
            f"_s{self.training.seed}"
        )
        if self.distillation.loss != "kl":
            name += f"_{self.distillation.loss}"
        if self.distillation_set.policy != "identity":
            name += f"_{self.distillation_set.policy}"
        if self.cache.cached_views:
            name += f"_views{self.cache.cached_views}"
        if self.student.initialization().interpolation is not None:
            name += f"_init{self.student.init.replace(':', '')}-{self.student.init_from}"
        return f"{name}_{config_hash(self)}"


@dataclasses.dataclass(frozen=True)
class TeachersConfig(Config):
    """Everything the teachers job (`keras_kd.jobs.teachers.train`) depends on."""

    data: Data = group(Data)
    teacher: Teacher = group(Teacher)
    training: Training = group(Training)
    output: Output = group(Output)
    runtime: Runtime = group(Runtime)


@dataclasses.dataclass(frozen=True)
class GANTraining(Config):
    """The GAN's own training settings (Adam for both networks, hinge loss).

    The defaults are tuned for 8x8 digits on a CPU: with Adam at lr 2e-4 (the
    GAN's usual default) 100 epochs left samples at a teacher Fréchet
    distance of 143 (noise: 186); at 1e-3, 150 epochs reached 43.
    """

    epochs: int = setting(200, "GAN training epochs.", lower=1)
    batch_size: int = setting(64, "GAN batch size (global).", flag="gan_batch_size", lower=1)
    lr: float = setting(1e-3, "Adam learning rate of both networks.", flag="gan_lr", above=0.0)
    beta_1: float = setting(0.5, "Adam beta_1 of both networks, in [0, 1).", lower=0.0,
                            below=1.0)
    beta_2: float = setting(0.999, "Adam beta_2 of both networks, in [0, 1).", lower=0.0,
                            below=1.0)
    latent_dim: int = setting(64, "Size of the generator's latent vector.", lower=1)
    discriminator_steps: int = setting(
        1, "Discriminator updates per generator update.", lower=1
    )
    num_samples: int = setting(1000, "Samples rated by the teacher.", lower=2)


@dataclasses.dataclass(frozen=True)
class GANConfig(Config):
    """Everything the GAN job (`keras_kd.jobs.gan`) depends on.

    `teacher` and `training` describe the teacher ensemble that rates the
    samples, resolved as the distill job resolves them, so both jobs share
    the same members.
    """

    data: Data = group(Data)
    gan: GANTraining = group(GANTraining)
    teacher: Teacher = group(Teacher)
    training: Training = group(Training)
    output: Output = group(Output)
    runtime: Runtime = group(Runtime)

    def teacher_spec(self):
        """How each teacher member is trained."""
        return self.teacher.spec(self.training)


def config_hash(config, length=6):
    """A short digest of every setting of `config` that shapes its result
    (`keras_kd.config.result_settings`): not where it writes and how it runs.

    >>> config_hash(DistillConfig()) == config_hash(DistillConfig(output=Output("elsewhere")))
    True
    """
    return digests.json_digest(config_lib.result_settings(config), length=length)


def training_fingerprint(config, data_digest):
    """What shapes a job's training, for its backups and result keys: every
    setting that shapes its result, the data's digest and keras_kd's version.

    >>> sorted(training_fingerprint(DistillConfig(), "d"))[:3]
    ['alpha', 'batch_size', 'cached_views']
    """
    return {**config_lib.result_settings(config), "data_digest": data_digest,
            "keras_kd": __version__}
