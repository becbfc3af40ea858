"""Trains a GAN on a dataset, saves its generator and rates its samples.

    python -m launch.train_gan --dataset=digits [--output_dir=DIR]

Writes `generator.keras` (what `launch.distill --policy=gan` samples),
`samples.png` and `metrics.json` under `DIR` (default
`<saved_models_dir>/<dataset>/gan`). Samples are rated with the teacher
ensemble `launch.distill` would use with the same teacher flags (reused, or
trained if missing): a Fréchet distance in its penultimate-layer feature
space (not Inception FID), the same for uniform noise, and the histogram of
its predicted classes. --batch_size, --optimizer, --lr and --weight_decay are
the teacher's training settings, as in launch.distill; the GAN has its own
(--epochs, --gan_batch_size, --gan_lr, ...). Every flag is a setting of
`keras_kd.jobs.GANConfig`.
"""

import json


from keras_kd import jobs

from launch import config_flags

config_flags.define_config_flags(jobs.GANConfig)


def main(argv):
    del argv
    config_flags.configure_logging()
    config = config_flags.config_from_flags(jobs.GANConfig)
    report = config_flags.run_or_exit(jobs.gan.run, config, verbose=config_flags.verbosity())
    print(json.dumps({key: report[key] for key in (
        "teacher_frechet_distance", "noise_frechet_distance", "class_histogram")}))
    artifacts = report["artifacts"]
    print(f"generator: {artifacts['generator']}")
    print(f"samples: {artifacts['samples_png']}")
    print(f"metrics: {report['config']['output_dir']}/metrics.json")


if __name__ == "__main__":
    config_flags.run(main)
