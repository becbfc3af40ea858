"""Distills a student from a teacher ensemble and reports its fidelity.

Trains (or reuses) the teacher members, distills the student, prints and
writes the fidelity report, and exports the student:

    python -m launch.distill --dataset=digits --student_arch=resnet8

Every flag is a setting of `keras_kd.jobs.DistillConfig`.
"""


from keras_kd import evaluation
from keras_kd import jobs
from keras_kd.jobs import report as report_lib

from launch import config_flags

config_flags.define_config_flags(jobs.DistillConfig)


def main(argv):
    del argv
    config_flags.configure_logging()
    config = config_flags.config_from_flags(jobs.DistillConfig)
    report = config_flags.run_or_exit(
        jobs.distill.run, config, verbose=config_flags.verbosity()
    )
    print()
    splits = report["splits"]
    print(evaluation.markdown_table(
        splits, [name for name in evaluation.METRIC_NAMES
                 if not name.startswith(("control", "reference"))]))
    if report.get("control") or report.get("reference"):
        print("\nthe distilled student beside its references (control: trained on the labels "
              "alone; reference: distilled identically from an independent teacher):")
        print(evaluation.markdown_table(splits, report_lib.CONTROL_COLUMNS))
    print()
    artifacts = report["artifacts"]
    print(f"student: {artifacts['saved_model']} (SavedModel), {artifacts['keras']}")
    print("teachers: " + ", ".join(artifacts["teachers"]))
    print(f"report: {report['config']['output_dir']}/report.json, {artifacts['report_md']}")


if __name__ == "__main__":
    config_flags.run(main)
