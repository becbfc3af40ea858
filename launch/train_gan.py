"""Trains a GAN on a dataset, saves its generator and rates its samples.

    python -m launch.train_gan --dataset=digits [--output_dir=DIR]

Writes `generator.keras` (what `launch.distill --policy=gan` samples),
`samples.png` and `metrics.json` under `DIR` (default
`<saved_models_dir>/<dataset>/gan`). Samples are rated with the teacher
ensemble `launch.distill` would use with the same teacher flags (reused, or
trained if missing): a Fréchet distance in its penultimate-layer feature
space (not Inception FID), the same for uniform noise, and the histogram of
its predicted classes. --batch_size, --optimizer, --lr and --weight_decay are
the teacher's training settings, as in launch.distill; the GAN has its own.
"""

import json

from absl import app
from absl import flags

from keras_kd import pipeline
from keras_kd.gan import job

from launch import common_flags

_DEFAULTS = job.GANConfig()

common_flags.define_teacher_flags(pipeline.DistillConfig())
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "GAN training epochs.", lower_bound=1)
flags.DEFINE_integer(
    "gan_batch_size", _DEFAULTS.batch_size, "GAN batch size (global).", lower_bound=1
)
flags.DEFINE_float("gan_lr", _DEFAULTS.lr, "Adam learning rate of both networks (> 0).")
flags.DEFINE_float("beta_1", _DEFAULTS.beta_1, "Adam beta_1 of both networks, in [0, 1).")
flags.DEFINE_float("beta_2", _DEFAULTS.beta_2, "Adam beta_2 of both networks, in [0, 1).")
flags.DEFINE_integer(
    "latent_dim", _DEFAULTS.latent_dim, "Size of the generator's latent vector.", lower_bound=1
)
flags.DEFINE_integer(
    "discriminator_steps", _DEFAULTS.discriminator_steps,
    "Discriminator updates per generator update.", lower_bound=1,
)
flags.DEFINE_integer(
    "num_samples", _DEFAULTS.num_samples, "Samples rated by the teacher.", lower_bound=2
)
flags.DEFINE_string(
    "output_dir", None, "Output folder (default <saved_models_dir>/<dataset>/gan)."
)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    common_flags.configure_logging()
    config = common_flags.validated(job.GANConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.gan_batch_size,
        latent_dim=FLAGS.latent_dim,
        discriminator_steps=FLAGS.discriminator_steps,
        lr=FLAGS.gan_lr,
        beta_1=FLAGS.beta_1,
        beta_2=FLAGS.beta_2,
        num_samples=FLAGS.num_samples,
        teacher=common_flags.teacher_spec(),
        members=FLAGS.members,
        seed=FLAGS.seed,
        output_dir=FLAGS.output_dir,
        teachers_dir=FLAGS.teachers_dir,
        saved_models_dir=FLAGS.saved_models_dir,
        runtime=common_flags.runtime_settings(),
    ))
    report = common_flags.run_or_exit(job.run, config, verbose=common_flags.verbosity())
    print(json.dumps({key: report[key] for key in (
        "teacher_frechet_distance", "noise_frechet_distance", "class_histogram")}))
    artifacts = report["artifacts"]
    print(f"generator: {artifacts['generator']}")
    print(f"samples: {artifacts['samples_png']}")
    print(f"metrics: {report['config']['output_dir']}/metrics.json")


if __name__ == "__main__":
    app.run(main)
