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


def main(argv):
    del argv
    common_flags.configure_logging()
    config = common_flags.validated(pipeline.DistillConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        teacher_arch=FLAGS.teacher_arch,
        members=FLAGS.members,
        teacher_epochs=FLAGS.teacher_epochs,
        student_arch=FLAGS.student_arch,
        alpha=FLAGS.alpha,
        temperature=FLAGS.temperature,
        epochs=FLAGS.epochs,
        policy=FLAGS.policy,
        flip={"auto": None, "on": True, "off": False}[FLAGS.flip],
        mixup_alpha=FLAGS.mixup_alpha,
        mixup_portion=FLAGS.mixup_portion,
        synthetic_fraction=FLAGS.synthetic_fraction,
        synthetic_temperature=FLAGS.synthetic_temperature,
        generator=FLAGS.generator,
        teacher_cache=FLAGS.teacher_cache,
        cached_views=FLAGS.cached_views,
        cache_dir=FLAGS.cache_dir,
        output_dir=FLAGS.output_dir,
        teachers_dir=FLAGS.teachers_dir,
        saved_models_dir=FLAGS.saved_models_dir,
        runtime=common_flags.runtime_settings(),
        **common_flags.training_settings(),
    ))
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
