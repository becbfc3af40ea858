"""Distillation-set throughput: each policy's pipeline against the step it feeds.

For every policy, on CIFAR-shaped random data (32x32x3, 10 classes by
default), measures:

- `pipeline_batches_per_s`: the `tf.data` distillation set alone;
- `step_batches_per_s`: `Distiller.fit` steps of a ResNet-20 student fed by
  that set (the teacher is called each step, except for `identity`, whose
  teacher logits are cached);

and `cached_step_vs_student_step`: the time of a cached-teacher Distiller
step over a plain student training step (`compile(SparseCCE, accuracy)`).
Each figure is the best of `--repeats` rounds that visit every case in turn,
in one process: the machines this runs on slow down in spells, which then
fall on every case alike, and the best round is the least disturbed.
The `gan` policy samples a randomly initialized DCGAN-shaped generator (a
stand-in with the GAN's shape, not a trained one).

    python -m benchmarks.pipeline
    python -m benchmarks.pipeline --policies=identity,crop_flip --steps=5
"""

import json
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

import keras_kd

_DEFAULT_POLICIES = [
    "identity", "crop_flip", "mixup", "cutmix", "crop_flip+mixup", "rotation", "vflip",
    "perspective", "grayscale", "color_jitter", "blur", "gan",
]
flags.DEFINE_list("policies", _DEFAULT_POLICIES, "Policies to measure.")
flags.DEFINE_integer("batch_size", 128, "Examples per batch.", lower_bound=1)
flags.DEFINE_integer("image_size", 32, "Height and width of the RGB images.", lower_bound=8)
flags.DEFINE_integer("classes", 10, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("examples", 2048, "Examples in the training split.", lower_bound=1)
flags.DEFINE_integer("steps", 10, "Training steps per timed fit.", lower_bound=1)
flags.DEFINE_integer(
    "pipeline_batches", 100, "Batches per timed run of a pipeline alone.", lower_bound=1
)
flags.DEFINE_integer(
    "repeats", 7, "Interleaved timed rounds per figure (the best is kept).", lower_bound=1
)
flags.DEFINE_string("student", "resnet20", "Student architecture.")
flags.DEFINE_string("teacher", "resnet20", "Teacher architecture.")
flags.DEFINE_integer("seed", 0, "Seed of the data, the models and the sets.")

flags.register_validator(
    "image_size", lambda size: size % 8 == 0,
    message="--image_size must be a multiple of 8 (the gan stand-in upsamples 8x).",
)

FLAGS = flags.FLAGS


def random_split(examples, image_size, classes, seed):
    """CIFAR-shaped random images in [0, 1] with random labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(examples, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, classes, size=examples).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y))


def stand_in_generator(image_size, latent_dim=128):
    """A DCGAN-shaped generator with random weights, latent -> [0, 1] images."""
    base = image_size // 8
    return keras.Sequential(
        [
            keras.Input((latent_dim,)),
            keras.layers.Dense(base * base * 256),
            keras.layers.Reshape((base, base, 256)),
            keras.layers.Conv2DTranspose(128, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2DTranspose(64, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", activation="sigmoid"),
        ],
        name="stand_in_generator",
    )


class PipelineTimer:
    """Times a dataset alone: batches per second sustained from a new iterator."""

    def __init__(self, dataset):
        self._dataset = dataset.repeat()

    def rate(self, batches):
        # A new iterator each time, past its first batches: a long-lived one
        # would fill its prefetch buffer while other cases are timed.
        iterator = iter(self._dataset)
        for _ in range(2):
            next(iterator)
        started = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches / (time.perf_counter() - started)


class FitTimer:
    """Times `model.fit` for `steps` batches of a dataset."""

    def __init__(self, model, dataset):
        self._model = model
        self._dataset = dataset.repeat()
        self._fit(2)  # warm up: traces the train step

    def _fit(self, steps):
        self._model.fit(
            self._dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False
        )

    def rate(self, steps):
        started = time.perf_counter()
        self._fit(steps)
        return steps / (time.perf_counter() - started)


def best_rates(timers, batches, repeats):
    """The best batches/s of each timer over `repeats` interleaved rounds.

    Rounds visit every timer in turn, so slow spells of a shared machine fall
    on all of them alike; the best round is the least disturbed one.
    """
    best = {name: 0.0 for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            best[name] = max(best[name], timer.rate(batches))
    return best


def distiller(student_arch, teacher, input_shape, classes, seed):
    keras.utils.set_random_seed(seed)
    student = keras_kd.models.get(student_arch, input_shape, classes)
    model = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.1, temperature=4.0)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    return model


def plain_student(student_arch, input_shape, classes, seed):
    keras.utils.set_random_seed(seed)
    student = keras_kd.models.get(student_arch, input_shape, classes)
    student.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return student


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")  # each model's first fit traces: not a retracing problem
    for spec in FLAGS.policies:  # every bad policy fails before any timing
        try:
            keras_kd.data.Policy.parse(spec)
        except ValueError as error:
            raise app.UsageError(str(error))
    input_shape = (FLAGS.image_size, FLAGS.image_size, 3)
    split = random_split(FLAGS.examples, FLAGS.image_size, FLAGS.classes, FLAGS.seed)
    keras.utils.set_random_seed(FLAGS.seed)
    teacher = keras_kd.models.get(FLAGS.teacher, input_shape, FLAGS.classes)
    generator = stand_in_generator(FLAGS.image_size)

    def distillation_set(spec):
        keras.utils.set_random_seed(FLAGS.seed)
        policy = keras_kd.data.Policy.parse(spec)
        return keras_kd.data.distillation_set(
            split, FLAGS.classes, policy, batch_size=FLAGS.batch_size, seed=FLAGS.seed,
            teacher=teacher, cache="memory" if spec == "identity" else "off",
            synthetic=generator if policy.uses_synthetic else None,
        )

    def new_distiller():
        return distiller(FLAGS.student, teacher, input_shape, FLAGS.classes, FLAGS.seed)

    pipelines, steps = {}, {}
    for spec in FLAGS.policies:
        pipelines[spec] = PipelineTimer(distillation_set(spec))
        steps[spec] = FitTimer(new_distiller(), distillation_set(spec))
    pipeline_rates = best_rates(pipelines, FLAGS.pipeline_batches, FLAGS.repeats)
    steps["cached distiller"] = FitTimer(new_distiller(), distillation_set("identity"))
    steps["plain student"] = FitTimer(
        plain_student(FLAGS.student, input_shape, FLAGS.classes, FLAGS.seed),
        keras_kd.data.batched(split, FLAGS.batch_size, shuffle=True, seed=FLAGS.seed),
    )
    step_rates = best_rates(steps, FLAGS.steps, FLAGS.repeats)

    results = {
        spec: {
            "pipeline_batches_per_s": round(pipeline_rates[spec], 2),
            "step_batches_per_s": round(step_rates[spec], 3),
            "pipeline_vs_step": round(pipeline_rates[spec] / step_rates[spec], 1),
            "teacher_cached": spec == "identity",
        }
        for spec in FLAGS.policies
    }
    for spec, row in results.items():
        print(f"{spec}: {row}")
    cached, student = step_rates["cached distiller"], step_rates["plain student"]
    print(json.dumps({
        "policies": results,
        "cached_step_vs_student_step": round(student / cached, 3),
        "cached_step_batches_per_s": round(cached, 3),
        "student_step_batches_per_s": round(student, 3),
        "settings": {
            "batch_size": FLAGS.batch_size, "input_shape": list(input_shape),
            "classes": FLAGS.classes, "examples": FLAGS.examples, "steps": FLAGS.steps,
            "pipeline_batches": FLAGS.pipeline_batches,
            "repeats": FLAGS.repeats, "student": FLAGS.student, "teacher": FLAGS.teacher,
            "gan_generator": "random-weight DCGAN-shaped stand-in",
            "statistic": "best of the interleaved repeats",
        },
    }))


if __name__ == "__main__":
    app.run(main)
