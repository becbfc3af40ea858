"""Measures how faithfully a saved student reproduces its teacher.

    python -m launch.evaluate --run_dir=saved_models/digits/distill/<run>
    python -m launch.evaluate --student=student.keras --teachers=m0.keras,m1.keras

Loads the student (a `.keras` file or a SavedModel folder) and the teacher
ensemble's members, and reports, on the dataset's train and test splits,
accuracy, calibration, NLL, top-1 agreement, predictive KL and (for `.keras`
models) the linear CKA of their penultimate features, and the same for a
control (an independently trained student) when there is one. `--run_dir`
takes the student, the teachers and the control from a launch.distill run's report. Prints a
Markdown table; `--output` also writes the numbers as JSON.
"""

from absl import app
from absl import flags

from keras_kd import evaluation
from keras_kd import export
from keras_kd import jobs

from launch import config_flags

config_flags.define_config_flags(jobs.Data)
flags.DEFINE_string("run_dir", None, "A launch.distill run folder (its report.json names the models).")
flags.DEFINE_string("student", None, "The student: a .keras file or a SavedModel folder.")
flags.DEFINE_list("teachers", [], "The teacher's members: .keras files or SavedModel folders.")
flags.DEFINE_string("control_model", None, "An independently trained student (the control; "
                    "default with --run_dir: the run's), reported beside the student.")
flags.DEFINE_list("splits", list(jobs.evaluate.SPLITS), "Splits to evaluate on.")
flags.DEFINE_integer("batch_size", 64, "Examples per evaluated batch.", lower_bound=1)
flags.DEFINE_string("output", None, "Also write the report as JSON here.")

FLAGS = flags.FLAGS


def models_to_evaluate():
    """(student path, teacher member paths, dataset, control path) from the flags."""
    if FLAGS.run_dir:
        student, teachers, dataset = jobs.evaluate.models_of_run(FLAGS.run_dir)
        if FLAGS["dataset"].present:
            dataset = FLAGS.dataset
        control = FLAGS.control_model or jobs.evaluate.control_of_run(FLAGS.run_dir)
        return FLAGS.student or student, FLAGS.teachers or teachers, dataset, control
    if not FLAGS.student or not FLAGS.teachers:
        raise app.UsageError("Pass --run_dir, or both --student and --teachers.")
    return FLAGS.student, FLAGS.teachers, FLAGS.dataset, FLAGS.control_model


def main(argv):
    del argv
    config_flags.configure_logging()
    try:
        student, teachers, dataset, control = models_to_evaluate()
        report = jobs.evaluate.evaluate(
            student, teachers, dataset, FLAGS.splits, FLAGS.batch_size, FLAGS.data_dir,
            control,
        )
    except ValueError as error:
        raise app.UsageError(str(error))
    print(evaluation.markdown_table(report))
    if FLAGS.output:
        export.write_json(
            {"student": student, "teachers": teachers, "control": control, "dataset": dataset,
             "splits": report},
            FLAGS.output,
        )
        print(f"report: {FLAGS.output}")


if __name__ == "__main__":
    config_flags.run(main)
