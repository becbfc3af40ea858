"""The train_gan job: train a GAN on a dataset, save its generator, rate its samples.

Sample quality is rated with the distillation teacher (trained, or reused from
`teachers_dir`, exactly as `launch.distill` would): the Fréchet distance
between its penultimate-layer features of real training images and of
generated ones, the same distance for uniform-noise images as a reference,
and the histogram of its predicted classes on the samples.
"""

import dataclasses
import os
import shutil
import time

import keras
import numpy as np

from keras_kd import data as data_lib
from keras_kd import distribute
from keras_kd import export
from keras_kd import pipeline
from keras_kd import training
from keras_kd.ensemble import Ensemble
from keras_kd.gan import quality
from keras_kd.gan.model import GAN
from keras_kd.gan.networks import make_discriminator
from keras_kd.gan.networks import make_generator
from keras_kd.runtime import Runtime


@dataclasses.dataclass(frozen=True)
class GANConfig:
    """Everything the train_gan job depends on.

    `teacher` (a `keras_kd.training.ClassifierSpec`) and `members` describe
    the teacher ensemble that rates the samples; `output_dir` defaults to
    `<saved_models_dir>/<dataset>/gan` and `teachers_dir` to
    `<saved_models_dir>/<dataset>/teachers`, where `launch.distill` looks.
    `runtime` sets the strategy, precision, XLA and determinism, and the
    backup folder (default `<output_dir>/backup`) a rerun resumes from.

    The defaults are tuned for 8x8 digits on a CPU: with Adam at lr 2e-4
    (the GAN's own default) 100 epochs left samples at a teacher Fréchet
    distance of 143 (noise: 186); at 1e-3, 150 epochs reached 43.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int = 200
    batch_size: int = 64
    latent_dim: int = 64
    discriminator_steps: int = 1
    lr: float = 1e-3
    beta_1: float = 0.5
    beta_2: float = 0.999
    num_samples: int = 1000
    teacher: training.ClassifierSpec = dataclasses.field(
        default_factory=lambda: pipeline.DistillConfig().teacher_spec()
    )
    members: int = 3
    seed: int = 0
    output_dir: str | None = None
    teachers_dir: str | None = None
    saved_models_dir: str = "saved_models"
    runtime: Runtime = dataclasses.field(default_factory=Runtime)

    def validate(self):
        """Raises a ValueError naming the first bad setting, before any work."""
        for name in ("epochs", "batch_size", "latent_dim", "discriminator_steps", "members"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) \
                or self.num_samples < 2:
            raise ValueError(f"num_samples must be an integer >= 2; got {self.num_samples!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}.")
        for name in ("beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1); got {getattr(self, name)!r}.")
        self.teacher.validate()
        self.runtime.validate()

    def resolved_dirs(self, dataset_slug):
        """The (output_dir, teachers_dir) of this run, defaults filled in."""
        root = os.path.join(self.saved_models_dir, dataset_slug)
        return (
            self.output_dir or os.path.join(root, "gan"),
            self.teachers_dir or os.path.join(root, "teachers"),
        )


def run(config, verbose="auto"):
    """Trains the GAN, saves it and rates its samples; returns the metrics.

    Writes, under the output folder: `generator.keras` (what the `gan`
    policy of a distillation set samples), `discriminator.keras`,
    `samples.png` (a grid of samples, each titled with the teacher's class)
    and `metrics.json` (`teacher_frechet_distance`,
    `noise_frechet_distance`, `class_histogram`, ...).
    """
    config.validate()
    strategy = config.runtime.start()
    data = data_lib.load(config.dataset, data_dir=config.data_dir)
    output_dir, teachers_dir = config.resolved_dirs(data.info.slug)
    backup_dir = config.runtime.resolved_backup_dir(output_dir)
    written_dir = distribute.worker_dir(output_dir, strategy)
    shape = tuple(data.info.input_shape)
    timing = {}

    started = time.perf_counter()
    gan_backup = distribute.worker_backup_dir(os.path.join(backup_dir, "gan"), strategy)
    initial_epoch = training.resume_epoch(gan_backup, strategy)
    keras.utils.set_random_seed(training.derived_seed(config.seed, "gan"))
    with strategy.scope():
        gan = GAN(
            make_generator(shape, config.latent_dim),
            make_discriminator(shape),
            discriminator_steps=config.discriminator_steps,
            seed=training.derived_seed(config.seed, "gan_latents"),
        )
        gan.compile(
            *(
                keras.optimizers.Adam(config.lr, beta_1=config.beta_1, beta_2=config.beta_2)
                for _ in range(2)
            ),
            **config.runtime.compile_settings(strategy),
        )
    batches = data_lib.batched(
        data.train, config.batch_size, shuffle=True, seed=config.seed, drop_remainder=True,
        epochs=config.epochs, initial_epoch=initial_epoch,
    )
    history = gan.fit(
        batches,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=data_lib.steps_per_epoch(batches, config.epochs, initial_epoch),
        callbacks=training.fit_callbacks(gan_backup, "the GAN"),
        verbose=verbose,
        shuffle=False,
    ).history
    generator_path = export.save_keras(
        gan.generator, os.path.join(written_dir, "generator.keras")
    )
    export.save_keras(gan.discriminator, os.path.join(written_dir, "discriminator.keras"))
    timing["gan_s"] = time.perf_counter() - started

    started = time.perf_counter()
    members = training.ensemble_members(
        config.teacher, data, config.members, teachers_dir, verbose,
        config.runtime, os.path.join(backup_dir, "teachers"),
    )
    teacher = Ensemble([member["path"] for member in members])
    timing["teachers_s"] = time.perf_counter() - started

    started = time.perf_counter()
    real = np.concatenate([x.numpy() for x, _ in data.train.batch(1024)])
    samples = gan.sample(config.num_samples, seed=config.seed).numpy()
    noise = np.random.default_rng(config.seed).uniform(size=samples.shape).astype("float32")
    real_features = quality.penultimate_features(teacher, real)
    histogram = quality.class_histogram(teacher, samples, data.info.num_classes)
    metrics = {
        "teacher_frechet_distance": quality.frechet_distance(
            real_features, quality.penultimate_features(teacher, samples)
        ),
        "noise_frechet_distance": quality.frechet_distance(
            real_features, quality.penultimate_features(teacher, noise)
        ),
        "class_histogram": histogram,
        "classes_covered": int(np.count_nonzero(histogram)),
        "real_class_histogram": quality.class_histogram(teacher, real, data.info.num_classes),
        "num_samples": config.num_samples,
        "final_losses": {name: float(values[-1]) for name, values in history.items() if values},
        "feature_space": (
            f"penultimate layer of the {len(members)}-member {config.teacher.arch} teacher "
            "(a Fréchet distance in its feature space, not Inception FID)"
        ),
    }
    samples_png = _save_grid(samples, teacher, os.path.join(written_dir, "samples.png"))
    timing["rate_s"] = time.perf_counter() - started
    report = {
        **metrics,
        "config": {**dataclasses.asdict(config), "output_dir": output_dir,
                   "teachers_dir": teachers_dir},
        "resumed_at_epoch": initial_epoch,
        "artifacts": {"generator": generator_path, "samples_png": samples_png,
                      "teachers": [member["path"] for member in members]},
        "timing": timing,
    }
    export.write_json(report, os.path.join(written_dir, "metrics.json"))
    shutil.rmtree(gan_backup if not distribute.is_chief(strategy) else backup_dir,
                  ignore_errors=True)
    distribute.cleanup_worker_dirs()
    return report


def _save_grid(samples, teacher, path, rows=8, columns=8):
    """Writes a grid of samples, each titled with the teacher's predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = samples[: rows * columns]
    predicted = teacher.predict(shown, verbose=0).argmax(axis=-1)
    figure, axes = pyplot.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.25))
    for axis, image, label in zip(axes.flat, shown, predicted):
        gray = image.shape[-1] == 1
        axis.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None,
                    vmin=0.0, vmax=1.0)
        axis.set_title(str(label), fontsize=8)
        axis.axis("off")
    for axis in list(axes.flat)[len(shown):]:
        axis.axis("off")
    figure.tight_layout()
    with export.atomic_path(path, suffix=".png") as staged:
        figure.savefig(staged, dpi=80)
    pyplot.close(figure)
    return path
