"""Distillation step throughput, against its parts, in images per second.

On random CIFAR-shaped data held in memory (so no input pipeline cost), in
one process, measures:

- `student_step`: a plain Keras training step of the student alone
  (`compile(SparseCategoricalCrossentropy)`);
- `teacher_forward`: the teacher ensemble's inference alone;
- `distill_step`: the `Distiller` step, the teacher called on every batch;
- `distill_step_cached`: the `Distiller` step fed cached teacher logits;
- `overhead`: distill_step time / (student_step time + teacher_forward time);
- `keras_list_step`: for reference, the common Keras pattern (keras.io's
  distillation example, its teacher members in a Python list inside
  `train_step`, the loss from `keras.losses.KLDivergence` on softened
  probabilities);
- `keras_distillation_step`: for reference, Keras' own
  `keras.distillation.Distiller` with a `LogitsDistillation` loss, the
  ensemble as one teacher model (`student_loss_weight` 0.1, as above).

Each measurement calls the compiled step function directly, `--steps` times
after `--warmup` untimed calls; the `--repeats` rounds visit every case in
turn (this machine slows down in spells, which then fall on every case
alike), and each figure is the median over rounds. The last line printed is
one JSON object.

    python -m benchmarks.distill_throughput
    python -m benchmarks.distill_throughput --precision=mixed_bfloat16
"""

import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

import keras_kd
from keras_kd.runtime import PRECISIONS
from keras_kd.runtime import Runtime

flags.DEFINE_string("teacher", "resnet20", "Teacher member architecture.")
flags.DEFINE_integer("members", 3, "Teacher ensemble size.", lower_bound=1)
flags.DEFINE_string("student", "resnet20", "Student architecture.")
flags.DEFINE_integer("image_size", 32, "Height and width of the RGB images.", lower_bound=8)
flags.DEFINE_integer("classes", 100, "Number of classes.", lower_bound=2)
flags.DEFINE_integer("batch_size", 128, "Examples per batch.", lower_bound=1)
flags.DEFINE_integer("steps", 10, "Timed steps per measurement.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed steps before each case's first round.", lower_bound=1)
flags.DEFINE_integer("repeats", 5, "Interleaved rounds (figures are medians).", lower_bound=1)
flags.DEFINE_enum("precision", "float32", list(PRECISIONS), "Keras dtype policy.")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA.")
flags.DEFINE_integer(
    "steps_per_execution", 1, "Training steps per call of the compiled function.", lower_bound=1
)
flags.DEFINE_integer("seed", 0, "Seed of the data and the models.")

FLAGS = flags.FLAGS


def _models(shape):
    keras.utils.set_random_seed(FLAGS.seed)
    members = [
        keras_kd.models.get(FLAGS.teacher, shape, FLAGS.classes) for _ in range(FLAGS.members)
    ]
    teacher = members[0] if FLAGS.members == 1 else keras_kd.Ensemble(members)
    return teacher, (lambda: keras_kd.models.get(FLAGS.student, shape, FLAGS.classes))


class KerasListDistiller(keras.Model):
    """The common Keras pattern: keras.io's distillation example, teacher members in a list."""

    def __init__(self, student, members, alpha=0.1, temperature=4.0):
        super().__init__()
        self.student = student
        self.members = members
        for member in members:
            member.trainable = False
        self.alpha = alpha
        self.temperature = temperature
        self.student_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.distillation_loss_fn = keras.losses.KLDivergence()
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def train_step(self, data):
        x, y = data
        teacher_probabilities = tf.reduce_mean(
            [tf.nn.softmax(member(x, training=False) / self.temperature)
             for member in self.members],
            axis=0,
        )
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            student_loss = self.student_loss_fn(y, student_logits)
            distillation_loss = self.distillation_loss_fn(
                teacher_probabilities, tf.nn.softmax(student_logits / self.temperature)
            ) * self.temperature**2
            loss = self.alpha * student_loss + (1 - self.alpha) * distillation_loss
        weights = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def _iterator(*tensors):
    """An endless iterator over one in-memory batch."""
    batch = tensors if len(tensors) > 1 else tensors[0]
    return iter(tf.data.Dataset.from_tensors(batch).repeat())


def _train_case(model, iterator):
    """A function running one compiled training step of `model`."""
    model.make_train_function()
    step = model.train_function
    return lambda: step(iterator)


def _cases(x, y):
    compile_settings = {
        "jit_compile": FLAGS.jit_compile,
        "steps_per_execution": FLAGS.steps_per_execution,
    }
    teacher, make_student = _models(tuple(x.shape[1:]))
    teacher_logits = teacher.predict(x, verbose=0)

    student = make_student()
    student.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_settings
    )
    forward = tf.function(lambda images: teacher(images, training=False),
                          jit_compile=FLAGS.jit_compile)
    distiller = keras_kd.Distiller(teacher=teacher, student=make_student())
    distiller.compile("sgd", **compile_settings)
    cached = keras_kd.Distiller(teacher=teacher, student=make_student())
    cached.compile("sgd", **compile_settings)
    members = getattr(teacher, "members", [teacher])
    keras_list = KerasListDistiller(make_student(), members)
    keras_list.compile("sgd", **compile_settings)
    keras_own = keras.distillation.Distiller(
        teacher, make_student(), keras.distillation.LogitsDistillation(temperature=4.0),
        student_loss_weight=0.1,
    )
    keras_own.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), **compile_settings
    )
    return {
        "student_step": _train_case(student, _iterator(x, y)),
        "teacher_forward": lambda: forward(x),
        "distill_step": _train_case(distiller, _iterator(x, y)),
        "distill_step_cached": _train_case(cached, _iterator(x, y, teacher_logits)),
        "keras_list_step": _train_case(keras_list, _iterator(x, y)),
        "keras_distillation_step": _train_case(keras_own, _iterator(x, y)),
    }


def _time(run, steps):
    started = time.perf_counter()
    for _ in range(steps):
        outputs = run()
    # Steps run asynchronously; reading a result waits for the last one.
    tf.nest.map_structure(lambda t: np.asarray(t), outputs)
    return (time.perf_counter() - started) / steps


def main(argv):
    del argv
    Runtime(precision=FLAGS.precision).start()
    rng = np.random.default_rng(FLAGS.seed)
    shape = (FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3)
    x = tf.constant(rng.random(shape, dtype="float32"))
    y = tf.constant(rng.integers(0, FLAGS.classes, FLAGS.batch_size), tf.int32)
    cases = _cases(x, y)
    for run in cases.values():
        _time(run, FLAGS.warmup)
    seconds = {name: [] for name in cases}
    for _ in range(FLAGS.repeats):
        for name, run in cases.items():
            seconds[name].append(_time(run, FLAGS.steps))
    # One call of a training case runs `steps_per_execution` steps.
    per_call = {name: 1 for name in cases}
    for name in ("student_step", "distill_step", "distill_step_cached", "keras_list_step",
                 "keras_distillation_step"):
        per_call[name] = FLAGS.steps_per_execution
    median = {
        name: statistics.median(values) / per_call[name] for name, values in seconds.items()
    }
    result = {name: FLAGS.batch_size / value for name, value in median.items()}
    result["overhead"] = median["distill_step"] / (
        median["student_step"] + median["teacher_forward"]
    )
    result["cached_vs_student_step"] = median["distill_step_cached"] / median["student_step"]
    # Speed-ups over Keras' own Distiller: where the gain is (the cache), and where not.
    result["distill_step_vs_keras_distillation"] = (
        median["keras_distillation_step"] / median["distill_step"]
    )
    result["cached_vs_keras_distillation"] = (
        median["keras_distillation_step"] / median["distill_step_cached"]
    )
    result["settings"] = {
        name: getattr(FLAGS, name)
        for name in ("teacher", "members", "student", "image_size", "classes", "batch_size",
                     "steps", "repeats", "precision", "jit_compile", "steps_per_execution")
    }
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
