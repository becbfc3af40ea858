"""Measures how faithfully a saved student reproduces its teacher.

    python -m launch.evaluate --run_dir=saved_models/digits/distill/<run>
    python -m launch.evaluate --student=student.keras --teachers=m0.keras,m1.keras

Loads the student (a `.keras` file or a SavedModel folder) and the teacher
ensemble's members, and reports, on the dataset's train and test splits,
accuracy, calibration, top-1 agreement, predictive KL and (for `.keras`
models) the linear CKA of their penultimate features. `--run_dir` takes the
student and the teachers from a launch.distill run's report. Prints a
Markdown table; `--output` also writes the numbers as JSON.
"""

import json
import os

from absl import app
from absl import flags

from keras_kd import data as data_lib
from keras_kd import evaluation
from keras_kd import export
from keras_kd.ensemble import Ensemble

from launch import common_flags

flags.DEFINE_string("run_dir", None, "A launch.distill run folder (its report.json names the models).")
flags.DEFINE_string("student", None, "The student: a .keras file or a SavedModel folder.")
flags.DEFINE_list("teachers", [], "The teacher's members: .keras files or SavedModel folders.")
flags.DEFINE_list("splits", ["train", "test"], "Splits to evaluate on.")
flags.DEFINE_string("output", None, "Also write the report as JSON here.")

FLAGS = flags.FLAGS


def models_to_evaluate():
    """(student path, teacher member paths, dataset) from the flags."""
    if FLAGS.run_dir:
        path = os.path.join(FLAGS.run_dir, "report.json")
        if not os.path.isfile(path):
            raise app.UsageError(f"--run_dir={FLAGS.run_dir!r} has no report.json.")
        with open(path) as f:
            report = json.load(f)
        student = FLAGS.student or report["artifacts"]["keras"]
        teachers = FLAGS.teachers or report["artifacts"]["teachers"]
        dataset = report["config"]["dataset"] if not FLAGS["dataset"].present else FLAGS.dataset
        return student, teachers, dataset
    if not FLAGS.student or not FLAGS.teachers:
        raise app.UsageError("Pass --run_dir, or both --student and --teachers.")
    return FLAGS.student, FLAGS.teachers, FLAGS.dataset


def main(argv):
    del argv
    common_flags.configure_logging()
    student_path, teacher_paths, dataset = models_to_evaluate()
    for path in [student_path, *teacher_paths]:
        if not os.path.exists(path):
            raise app.UsageError(f"No model at {path!r}.")
    data = data_lib.load(dataset, data_dir=FLAGS.data_dir)
    available = {"train": data.train, "test": data.test}
    unknown = sorted(set(FLAGS.splits) - set(available))
    if unknown:
        raise app.UsageError(f"--splits: unknown split(s) {unknown}; expected train, test.")
    student = export.load_model(student_path)
    teacher = Ensemble(teacher_paths)
    splits = {
        name: data_lib.batched(available[name], FLAGS.batch_size) for name in FLAGS.splits
    }
    functional = all(path.endswith(".keras") for path in [student_path, *teacher_paths])
    report = evaluation.fidelity_report(teacher, student, splits, representation=functional)
    print(evaluation.markdown_table(report))
    if FLAGS.output:
        export.write_json(
            {"student": student_path, "teachers": teacher_paths, "dataset": dataset,
             "splits": report},
            FLAGS.output,
        )
        print(f"report: {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
