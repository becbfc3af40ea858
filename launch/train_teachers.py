"""Trains the members of a teacher ensemble and saves each with its test metrics.

    python -m launch.train_teachers --dataset=digits --teacher_arch=resnet20 --members=3

Members already trained with the same settings are reused, so a larger
ensemble only trains the members it lacks. The flags are those launch.distill
uses for its teacher (`--teacher_arch`, `--teacher_epochs`, ...; `--arch` and
`--epochs` are kept as aliases), so both apps find the same members.
"""


from keras_kd import jobs

from launch import config_flags

config_flags.define_config_flags(jobs.TeachersConfig)
config_flags.define_alias("arch", "teacher_arch")
config_flags.define_alias("epochs", "teacher_epochs")


def main(argv):
    del argv
    config_flags.configure_logging()
    config = config_flags.config_from_flags(jobs.TeachersConfig)
    result = config_flags.run_or_exit(
        jobs.teachers.train, config, verbose=config_flags.verbosity()
    )
    if not result["chief"]:
        return
    for member in result["members"]:
        status = "reused" if member["reused"] else "trained"
        print(f"{member['path']}: test accuracy {member['test_accuracy']:.4f} ({status})")
    print(f"ensemble of {len(result['members'])}: test accuracy "
          f"{result['ensemble_test_accuracy']:.4f}")


if __name__ == "__main__":
    config_flags.run(main)
