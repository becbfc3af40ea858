"""The GAN job: train a GAN on a dataset, save its generator, rate its samples.

Sample quality is rated with the distillation teacher (trained, or reused from
`teachers_dir`, exactly as `launch.distill` would): the Fréchet distance
between its penultimate-layer features of real training inputs and of
generated ones, the same distance for noise as a reference (uniform images;
Gaussian signals of the data's mean and spread), and the histogram of its
predicted classes on the samples.
"""

import keras
import numpy as np

from keras_kd import config as config_lib
from keras_kd import data as data_lib
from keras_kd import digests
from keras_kd import export
from keras_kd import seeds
from keras_kd import training
from keras_kd.gan import quality
from keras_kd.gan.model import GAN
from keras_kd.gan.networks import make_discriminator
from keras_kd.gan.networks import make_generator
from keras_kd.jobs import configs
from keras_kd.jobs import folders
from keras_kd.jobs import outline
from keras_kd.jobs import teachers as teachers_lib


def run(config, verbose="auto"):
    """Trains the GAN, saves it and rates its samples; returns the metrics.

    Writes, under the output folder: `generator.keras` (what the `gan`
    policy of a distillation set samples), `discriminator.keras`,
    `samples.png` (a grid of samples, each titled with the teacher's class)
    and `metrics.json` (`teacher_frechet_distance`,
    `noise_frechet_distance`, `class_histogram`, ...).
    """
    job = outline.JobRun(config.runtime)
    data = data_lib.load(config.data.dataset, data_dir=config.data.data_dir)
    _check_inputs(data)
    outline.check_models_fit(data.info, teacher_arch=config.teacher.arch)
    teachers_dir = folders.path(config, data.info.slug, "teachers")
    job.open(folders.path(config, data.info.slug, "gan"), teachers_dir)
    with job.timed("gan_s"):
        gan, history, initial_epoch = _train(config, data, job, verbose)
        generator_path = _save(gan, data, job)
    with job.timed("teachers_s"):
        members, teacher = teachers_lib.ensemble(config, data, job, verbose)
    with job.timed("rate_s"):
        samples = gan.sample(config.gan.num_samples, seed=config.training.seed).numpy()
        metrics = rate_samples(samples, teacher, data, config.training.seed)
        samples_png = _save_grid(samples, teacher, job.write_path("samples.png"))
    metrics["final_losses"] = {
        name: float(values[-1]) for name, values in history.items() if values
    }
    metrics["feature_space"] = (
        f"penultimate layer of the {len(members)}-member {config.teacher.arch} teacher "
        "(a Fréchet distance in its feature space, not Inception FID)"
    )
    report = {
        **metrics,
        "config": {**config_lib.flat(config), "output_dir": job.output_dir,
                   "teachers_dir": teachers_dir},
        "resumed_at_epoch": initial_epoch,
        "resume_refused": job.resume_refused or None,
        "artifacts": {"generator": generator_path, "samples_png": samples_png,
                      "teachers": [member["path"] for member in members]},
    }
    return job.write_report(report, name="metrics.json")


def _check_inputs(data):
    """Refuses text: the GAN makes images and signals."""
    if data.info.kind == data_lib.TOKENS:
        raise outline.ConfigError(
            f"Dataset {data.info.name!r} is text (token ids); the GAN makes images and "
            "signals. Distill a text dataset with the identity or token_mask stages."
        )


def _train(config, data, job, verbose):
    """Trains the GAN, resuming a backed-up run; returns `(gan, history, initial_epoch)`."""
    settings, seed = config.gan, config.training.seed
    gan_backup = job.backup_dir("gan")
    initial_epoch = job.resume_epoch(
        gan_backup, configs.training_fingerprint(config, data.digest)
    )
    keras.utils.set_random_seed(seeds.derived_seed(seed, "gan"))
    shape = tuple(data.info.input_shape)
    with job.strategy.scope():
        gan = GAN(
            make_generator(shape, settings.latent_dim),
            make_discriminator(shape),
            discriminator_steps=settings.discriminator_steps,
            seed=seeds.derived_seed(seed, "gan_latents"),
        )
        gan.compile(
            *(keras.optimizers.Adam(settings.lr, beta_1=settings.beta_1, beta_2=settings.beta_2)
              for _ in range(2)),
            **config.runtime.compile_settings(job.strategy),
        )
    batches = data_lib.batched(
        data.train, settings.batch_size, shuffle=True, seed=seed, drop_remainder=True,
        epochs=settings.epochs, initial_epoch=initial_epoch,
    )
    history = gan.fit(
        batches,
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=data_lib.steps_per_epoch(batches, settings.epochs, initial_epoch),
        callbacks=training.fit_callbacks(gan_backup, "the GAN",
                                         config.runtime.backup_every_steps),
        verbose=verbose,
        shuffle=False,
    ).history
    return gan, history, initial_epoch


def _save(gan, data, job):
    """Saves both networks and the generator's record; returns the generator's path."""
    generator_path = export.save_keras(gan.generator, job.write_path("generator.keras"))
    export.save_keras(gan.discriminator, job.write_path("discriminator.keras"))
    # What the distill job checks before sampling it: whole, and of this data.
    export.write_json(
        {"sha256": digests.file_digest(generator_path), "dataset": data.info.name,
         "data_digest": data.digest},
        job.write_path("generator.json"),
    )
    return generator_path


def rate_samples(samples, teacher, data, seed):
    """How a teacher sees generated samples against real training inputs.

    Returns `teacher_frechet_distance` (real vs samples, in the teacher's
    penultimate feature space), `noise_frechet_distance` (real vs
    noise, the reference), the class histograms of samples and real inputs,
    and `classes_covered`.
    """
    real = np.concatenate([x.numpy() for x, _ in data.train.batch(1024)])
    noise = _noise_like(real, len(samples), seed)
    real_features = quality.penultimate_features(teacher, real)
    histogram = quality.class_histogram(teacher, samples, data.info.num_classes)
    return {
        "teacher_frechet_distance": quality.frechet_distance(
            real_features, quality.penultimate_features(teacher, samples)
        ),
        "noise_frechet_distance": quality.frechet_distance(
            real_features, quality.penultimate_features(teacher, noise)
        ),
        "class_histogram": histogram,
        "classes_covered": int(np.count_nonzero(histogram)),
        "real_class_histogram": quality.class_histogram(teacher, real, data.info.num_classes),
        "num_samples": int(len(samples)),
    }


def _noise_like(real, count, seed):
    """The reference noise: uniform in [0, 1] for images (their range), and
    Gaussian with the real inputs' mean and standard deviation otherwise."""
    rng = np.random.default_rng(seed)
    shape = (count, *real.shape[1:])
    if real.ndim == 4:
        return rng.uniform(size=shape).astype("float32")
    return rng.normal(real.mean(), real.std(), size=shape).astype("float32")


def _save_grid(samples, teacher, path, rows=8, columns=8):
    """Writes a grid of samples (images, or signals as curves), each titled
    with the teacher's predicted class."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = samples[: rows * columns]
    predicted = teacher.predict(shown, verbose=0).argmax(axis=-1)
    figure, axes = pyplot.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.25))
    for axis, example, label in zip(axes.flat, shown, predicted):
        if example.ndim == 2:  # a signal: one curve per channel
            axis.plot(example, linewidth=0.8)
        else:
            gray = example.shape[-1] == 1
            axis.imshow(example[..., 0] if gray else example, cmap="gray" if gray else None,
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
