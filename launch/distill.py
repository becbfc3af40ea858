"""Distills a student from a teacher ensemble and reports its fidelity.

Trains (or reuses) the teacher members, distills the student, prints and
writes the fidelity report, and exports the student:

    python -m launch.distill --dataset=digits --student_arch=resnet8
"""

from absl import app
from absl import flags

from keras_kd import evaluation
from keras_kd import pipeline

from launch import common_flags

_DEFAULTS = pipeline.DistillConfig()

flags.DEFINE_string("teacher_arch", _DEFAULTS.teacher_arch, "Teacher member architecture.")
flags.DEFINE_integer("members", _DEFAULTS.members, "Teacher ensemble size.", lower_bound=1)
flags.DEFINE_integer(
    "teacher_epochs", _DEFAULTS.teacher_epochs, "Epochs per teacher member.", lower_bound=1
)
flags.DEFINE_string("student_arch", _DEFAULTS.student_arch, "Student architecture.")
flags.DEFINE_float(
    "alpha", _DEFAULTS.alpha,
    "Weight of the hard-label loss; 0 is pure distillation.",
    lower_bound=0.0, upper_bound=1.0,
)
flags.DEFINE_float("temperature", _DEFAULTS.temperature, "Distillation temperature (> 0).")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Distillation epochs.", lower_bound=1)
flags.DEFINE_string(
    "output_dir", None,
    "Run folder (default <saved_models_dir>/<dataset>/distill/<run name>).",
)
flags.DEFINE_string(
    "teachers_dir", None,
    "Folder of teacher members to reuse or fill "
    "(default <saved_models_dir>/<dataset>/teachers).",
)

FLAGS = flags.FLAGS


def main(argv):
    del argv
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
        output_dir=FLAGS.output_dir,
        teachers_dir=FLAGS.teachers_dir,
        saved_models_dir=FLAGS.saved_models_dir,
        **common_flags.training_settings(),
    ))
    report = pipeline.run(config, verbose=common_flags.verbosity())
    print()
    print(evaluation.markdown_table(report["splits"]))
    print()
    artifacts = report["artifacts"]
    print(f"student: {artifacts['saved_model']} (SavedModel), {artifacts['keras']}")
    print("teachers: " + ", ".join(artifacts["teachers"]))
    print(f"report: {report['config']['output_dir']}/report.json, {artifacts['report_md']}")


if __name__ == "__main__":
    app.run(main)
