"""Flags shared by the launch apps (imported, so they are defined once)."""

from absl import app
from absl import flags
from absl import logging

from keras_kd import distribute
from keras_kd import runtime
from keras_kd import training

flags.DEFINE_string(
    "dataset", "digits",
    "Dataset: 'digits' (bundled, no download), 'tfds:<name>' or 'npz:<path>'.",
)
flags.DEFINE_string("data_dir", None, "TFDS data folder (TFDS' default if unset).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.", lower_bound=1)
flags.DEFINE_enum("optimizer", "adam", list(training.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("lr", 2e-3, "Initial learning rate (cosine-decayed to 0).")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Seed of initializations and batch order.")
flags.DEFINE_string(
    "saved_models_dir", "saved_models", "Root of the default output folders."
)
flags.DEFINE_enum(
    "verbose", "auto", ["auto", "0", "1", "2"],
    "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.",
)

flags.DEFINE_enum(
    "strategy", "default", list(distribute.STRATEGIES),
    "Distribution: default (one device), mirrored (all local GPUs, or "
    "--cpu_replicas CPU devices), multi_worker (one process per worker, the "
    "cluster from TF_CONFIG or Slurm), tpu.",
)
flags.DEFINE_integer(
    "cpu_replicas", None, "With --strategy=mirrored: mirror over this many CPU devices.",
    lower_bound=1,
)
flags.DEFINE_enum(
    "precision", "float32", list(runtime.PRECISIONS),
    "Keras dtype policy; losses and softmax stay float32, float16 scales the loss.",
)
flags.DEFINE_bool(
    "jit_compile", None, "Compile training steps with XLA (default: Keras decides; "
    "on for GPUs, off on CPUs).",
)
flags.DEFINE_bool(
    "deterministic", False,
    "Deterministic TensorFlow ops, so a resumed run ends bit for bit as an "
    "uninterrupted one.",
)
flags.DEFINE_string(
    "backup_dir", None,
    "Where training is backed up each epoch; rerunning the same command resumes "
    "from it (default <output_dir>/backup).",
)

FLAGS = flags.FLAGS


def define_teacher_flags(defaults):
    """Defines --teacher_arch, --members, --teacher_epochs, --teacher_optimizer,
    --teacher_lr and --teachers_dir.

    Args:
        defaults: a `keras_kd.pipeline.DistillConfig` giving the defaults.
    """
    flags.DEFINE_string("teacher_arch", defaults.teacher_arch, "Teacher member architecture.")
    flags.DEFINE_integer("members", defaults.members, "Teacher ensemble size.", lower_bound=1)
    flags.DEFINE_integer(
        "teacher_epochs", defaults.teacher_epochs, "Epochs per teacher member.", lower_bound=1
    )
    flags.DEFINE_enum(
        "teacher_optimizer", None, list(training.OPTIMIZERS),
        "Optimizer of the teacher members (default: --optimizer).",
    )
    flags.DEFINE_float(
        "teacher_lr", None, "Learning rate of the teacher members (default: --lr)."
    )
    flags.DEFINE_string(
        "teachers_dir", None,
        "Folder of teacher members to reuse or fill "
        "(default <saved_models_dir>/<dataset>/teachers).",
    )


def configure_logging():
    """Shows warnings and up unless --verbosity was given (-v 0 for INFO).

    TensorFlow logs every SavedModel write at INFO, and absl's `app.run`
    raises an unset --verbosity to INFO after parsing, so this runs in `main`.
    """
    if not FLAGS["verbosity"].present:
        logging.set_verbosity("warning")


def verbosity():
    """The --verbose flag as Keras takes it."""
    return FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)


def training_settings():
    """The shared training flags, as keyword arguments of the config classes."""
    return {
        "batch_size": FLAGS.batch_size,
        "optimizer": FLAGS.optimizer,
        "lr": FLAGS.lr,
        "weight_decay": FLAGS.weight_decay,
        "seed": FLAGS.seed,
    }


def teacher_spec():
    """The teacher members' `ClassifierSpec` from the teacher and training flags.

    Built by `DistillConfig.teacher_spec`, so every app resolves
    --teacher_optimizer and --teacher_lr (default: --optimizer, --lr) as
    launch.distill does, and finds the same members.
    """
    from keras_kd import pipeline

    return pipeline.DistillConfig(
        teacher_arch=FLAGS.teacher_arch,
        teacher_epochs=FLAGS.teacher_epochs,
        teacher_optimizer=FLAGS.teacher_optimizer,
        teacher_lr=FLAGS.teacher_lr,
        **training_settings(),
    ).teacher_spec()


def runtime_settings():
    """The --strategy, --precision, ... flags as a `keras_kd.runtime.Runtime`."""
    return runtime.Runtime(
        strategy=FLAGS.strategy,
        cpu_replicas=FLAGS.cpu_replicas,
        precision=FLAGS.precision,
        jit_compile=FLAGS.jit_compile,
        deterministic=FLAGS.deterministic,
        backup_dir=FLAGS.backup_dir,
    )


def run_or_exit(job, *args, **kwargs):
    """Calls `job`; a NaN loss ends the app with its message and exit code 1."""
    from keras_kd import callbacks

    try:
        return job(*args, **kwargs)
    except callbacks.NonFiniteLossError as error:
        raise SystemExit(f"error: {error}")


def validated(config):
    """Returns `config`, or exits with a usage error naming its bad setting."""
    try:
        config.validate()
    except ValueError as error:
        raise app.UsageError(str(error))
    return config
