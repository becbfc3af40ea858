"""Distills a student from a teacher ensemble and reports its fidelity.

Trains (or reuses) the teacher members, distills the student, prints and
writes the fidelity report, and exports the student:

    python -m launch.distill --dataset=digits --student_arch=resnet8
"""

from absl import app
from absl import flags

from keras_kd import data as data_lib
from keras_kd import evaluation
from keras_kd import pipeline

from launch import common_flags

_DEFAULTS = pipeline.DistillConfig()

common_flags.define_teacher_flags(_DEFAULTS)
flags.DEFINE_string("student_arch", _DEFAULTS.student_arch, "Student architecture.")
flags.DEFINE_string(
    "student_init", _DEFAULTS.student_init,
    "Student initialization: random, or interpolate:LAMBDA for LAMBDA * target + "
    "(1 - LAMBDA) * random (needs --members=1 and --student_arch=--teacher_arch).",
)
flags.DEFINE_enum(
    "student_init_from", _DEFAULTS.student_init_from, ["teacher", "teacher_init"],
    "Target of --student_init=interpolate: the teacher's trained weights, or the "
    "weights it was initialized with.",
)
flags.DEFINE_float(
    "alpha", _DEFAULTS.alpha,
    "Weight of the hard-label loss; 0 is pure distillation.",
    lower_bound=0.0, upper_bound=1.0,
)
flags.DEFINE_float("temperature", _DEFAULTS.temperature, "Distillation temperature (> 0).")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Distillation epochs.", lower_bound=1)
flags.DEFINE_string(
    "policy", _DEFAULTS.policy,
    "Distillation-set policy: stages joined with '+', among "
    + ", ".join(data_lib.STAGES) + " (e.g. crop_flip+mixup).",
)
flags.DEFINE_enum(
    "flip", "auto", ["auto", "on", "off"],
    "Horizontal flip in crop_flip; auto: on, except for digit datasets.",
)
flags.DEFINE_float(
    "mixup_alpha", _DEFAULTS.mixup_alpha, "Beta(a, a) parameter of mixup and cutmix (> 0)."
)
flags.DEFINE_float(
    "mixup_portion", _DEFAULTS.mixup_portion,
    "Share of each batch that mixup/cutmix mix.", lower_bound=0.0, upper_bound=1.0,
)
flags.DEFINE_float(
    "synthetic_fraction", _DEFAULTS.synthetic_fraction,
    "Share of each batch drawn from the generator under the gan stage.",
    lower_bound=0.0, upper_bound=1.0,
)
flags.DEFINE_float(
    "synthetic_temperature", None,
    "Distillation temperature of synthetic examples (default: --temperature).",
)
flags.DEFINE_string(
    "generator", None,
    "Keras generator file for the gan stage "
    "(default <saved_models_dir>/<dataset>/gan/generator.keras).",
)
flags.DEFINE_enum(
    "teacher_cache", _DEFAULTS.teacher_cache, list(data_lib.CACHE_MODES),
    "Teacher-output caching: auto caches static policies (on disk) and "
    "--cached_views (in memory when it fits); off calls the teacher every step.",
)
flags.DEFINE_integer(
    "cached_views", _DEFAULTS.cached_views,
    "Pre-sample this many augmented copies of the training set and cache their "
    "teacher outputs (stochastic policies); 0: draw fresh every epoch.",
    lower_bound=0,
)
flags.DEFINE_string(
    "cache_dir", None,
    "Folder of disk caches (default <saved_models_dir>/<dataset>/teacher_cache).",
)
flags.DEFINE_string(
    "output_dir", None,
    "Run folder (default <saved_models_dir>/<dataset>/distill/<run name>).",
)

FLAGS = flags.FLAGS

# The flags that make up a run's DistillConfig (what launch.sweep may vary).
CONFIG_FLAGS = (
    "dataset", "data_dir", "teacher_arch", "members", "teacher_epochs", "teacher_optimizer",
    "teacher_lr", "student_arch",
    "student_init", "student_init_from", "alpha", "temperature", "epochs", "policy", "flip",
    "mixup_alpha", "mixup_portion", "synthetic_fraction", "synthetic_temperature",
    "generator", "teacher_cache", "cached_views", "cache_dir", "output_dir", "teachers_dir",
    "saved_models_dir", "batch_size", "optimizer", "lr", "weight_decay", "seed",
)


def config_from_flags(overrides=None):
    """The run's `DistillConfig` from the flags, `overrides` (name: value) winning."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(CONFIG_FLAGS))
    if unknown:
        raise ValueError(f"Not flags of launch.distill's config: {unknown}.")

    def value(name):
        return overrides[name] if name in overrides else FLAGS[name].value

    return pipeline.DistillConfig(
        dataset=value("dataset"),
        data_dir=value("data_dir"),
        teacher_arch=value("teacher_arch"),
        members=value("members"),
        teacher_epochs=value("teacher_epochs"),
        teacher_optimizer=value("teacher_optimizer"),
        teacher_lr=value("teacher_lr"),
        student_arch=value("student_arch"),
        student_init=value("student_init"),
        student_init_from=value("student_init_from"),
        alpha=value("alpha"),
        temperature=value("temperature"),
        epochs=value("epochs"),
        policy=value("policy"),
        flip={"auto": None, "on": True, "off": False}[value("flip")],
        mixup_alpha=value("mixup_alpha"),
        mixup_portion=value("mixup_portion"),
        synthetic_fraction=value("synthetic_fraction"),
        synthetic_temperature=value("synthetic_temperature"),
        generator=value("generator"),
        teacher_cache=value("teacher_cache"),
        cached_views=value("cached_views"),
        cache_dir=value("cache_dir"),
        output_dir=value("output_dir"),
        teachers_dir=value("teachers_dir"),
        saved_models_dir=value("saved_models_dir"),
        batch_size=value("batch_size"),
        optimizer=value("optimizer"),
        lr=value("lr"),
        weight_decay=value("weight_decay"),
        seed=value("seed"),
        runtime=common_flags.runtime_settings(),
    )


def main(argv):
    del argv
    common_flags.configure_logging()
    config = common_flags.validated(config_from_flags())
    try:
        report = common_flags.run_or_exit(
            pipeline.run, config, verbose=common_flags.verbosity()
        )
    except pipeline.ConfigError as error:
        raise app.UsageError(str(error))
    print()
    print(evaluation.markdown_table(report["splits"]))
    print()
    artifacts = report["artifacts"]
    print(f"student: {artifacts['saved_model']} (SavedModel), {artifacts['keras']}")
    print("teachers: " + ", ".join(artifacts["teachers"]))
    print(f"report: {report['config']['output_dir']}/report.json, {artifacts['report_md']}")


if __name__ == "__main__":
    app.run(main)
