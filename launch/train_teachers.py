"""Trains the members of a teacher ensemble and saves each with its test metrics.

    python -m launch.train_teachers --dataset=digits --arch=resnet20 --members=3

Members already trained with the same settings are reused, so a larger
ensemble only trains the members it lacks.
"""

import os

from absl import app
from absl import flags

from keras_kd import data as data_lib
from keras_kd import distribute
from keras_kd import evaluation
from keras_kd import training
from keras_kd.ensemble import Ensemble

from launch import common_flags

flags.DEFINE_string("arch", "resnet20", "Member architecture.")
flags.DEFINE_integer("members", 3, "Number of members.", lower_bound=1)
flags.DEFINE_integer("epochs", 15, "Epochs per member.", lower_bound=1)
flags.DEFINE_string(
    "output_dir", None, "Folder of members (default <saved_models_dir>/<dataset>/teachers)."
)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    common_flags.configure_logging()
    spec = common_flags.validated(training.ClassifierSpec(
        arch=FLAGS.arch, epochs=FLAGS.epochs, **common_flags.training_settings()
    ))
    runtime = common_flags.validated(common_flags.runtime_settings())
    strategy = runtime.start()
    data = data_lib.load(FLAGS.dataset, data_dir=FLAGS.data_dir)
    output_dir = FLAGS.output_dir or os.path.join(
        FLAGS.saved_models_dir, data.info.slug, "teachers"
    )
    members = common_flags.run_or_exit(
        training.ensemble_members, spec, data, FLAGS.members, output_dir,
        common_flags.verbosity(), runtime, runtime.resolved_backup_dir(output_dir),
    )
    if not distribute.is_chief(strategy):
        distribute.cleanup_worker_dirs()
        return
    for member in members:
        status = "reused" if member["reused"] else "trained"
        print(f"{member['path']}: test accuracy {member['test_accuracy']:.4f} ({status})")
    teacher = Ensemble([member["path"] for member in members])
    test = data_lib.batched(data.test, FLAGS.batch_size)
    ensemble = evaluation.fidelity_metrics(teacher, teacher, test)
    print(f"ensemble of {len(members)}: test accuracy {ensemble['teacher_accuracy']:.4f}")


if __name__ == "__main__":
    app.run(main)
