"""`Distiller`: a `keras.Model` that trains a student to match a teacher."""

import contextlib
import inspect
import re
import warnings

import keras
import tensorflow as tf

from keras_kd import batch as batch_lib
from keras_kd import callbacks
from keras_kd import keras_compat
from keras_kd import multi_worker
from keras_kd import fidelity as fidelity_lib
from keras_kd import losses
from keras_kd import models


def distillation_loss_of(loss=None, alpha=None, temperature=None):
    """The `keras_kd.losses.DistillationLoss` a `Distiller` is built with.

    `loss` is a loss object, or the name of a registered loss (default
    `"kl"`), built with `alpha` (default 0) and `temperature` (default 4).
    A loss object carries its own settings, so `alpha` and `temperature`
    must then be left unset.
    """
    if loss is None or isinstance(loss, str):
        return losses.get(
            "kl" if loss is None else loss, alpha=0.0 if alpha is None else alpha,
            temperature=4.0 if temperature is None else temperature)
    if not isinstance(loss, losses.DistillationLoss):
        raise TypeError(
            f"loss must be a keras_kd.losses.DistillationLoss or the name of one "
            f"({sorted(losses.LOSSES)}); got {loss!r}.")
    given = [name for name, value in (("alpha", alpha), ("temperature", temperature))
             if value is not None]
    if given:
        raise ValueError(
            f"Distiller got loss={loss!r} and {', '.join(given)}: a loss object carries its "
            "own settings; set them on the loss (or pass the loss by name).")
    return loss


def _check_class_counts(student_classes, teacher_classes, teacher_name="teacher"):
    if None in (student_classes, teacher_classes):
        return
    if student_classes != teacher_classes:
        raise ValueError(
            f"The student predicts {student_classes} classes but the "
            f"{teacher_name} predicts {teacher_classes}; they must be equal."
        )


def _check_models(student, teacher):
    """Refuses models whose inputs differ, or that output probabilities, naming them."""
    shapes = models.input_shape(student), models.input_shape(teacher)
    if None not in shapes and shapes[0] != shapes[1]:
        raise ValueError(
            f"The student {student.name!r} takes inputs of shape {shapes[0]} but the "
            f"teacher {teacher.name!r} takes {shapes[1]}; both must see the same inputs."
        )
    for role, model in (("student", student), ("teacher", teacher)):
        layer = models.softmax_output_layer(model)
        if layer:
            raise ValueError(
                f"The {role} {model.name!r} ends in a softmax (layer {layer!r}), so it "
                "returns probabilities; the Distiller expects logits. Build it without "
                "the final softmax (e.g. Dense(classes) with no activation)."
            )


@keras.saving.register_keras_serializable(package="keras_kd")
class Distiller(multi_worker.MultiWorkerFit, keras.Model):
    """Trains a student on a blend of hard labels and a teacher's soft targets.

    The per-example loss is a `keras_kd.losses.DistillationLoss`; the
    default, `KLDistillation`, is

        alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

    for teacher logits `t`, student logits `s` and temperature `T`. It is
    averaged over the *global* batch so that a step is the same on one
    device, N replicas or N workers, and the student's regularization
    losses are added.
    The teacher is called with `training=False` and never trained; batches
    that carry precomputed teacher logits skip it (see `keras_kd.batch`).

    Calling the distiller calls the student, so `predict`, `export` and
    `save` work as for any model; `export` writes the student alone.

    `fit` and `evaluate` report `loss` (the distillation loss), its terms
    `hard_loss` and `soft_loss` (`alpha * CE` and `(1 - alpha) * T^2 * KL`
    for the default; see `DistillationLoss.compute_terms`),
    and the `keras_kd.fidelity.Fidelity` metrics: `student_accuracy`
    (against labels), `agreement` and `predictive_kl` (student against
    teacher, at temperature 1) and `student_ece` (the student's calibration),
    named as in every fidelity report.

    The models are passed by keyword (`teacher=`, `student=`): Keras' own
    `keras.distillation.Distiller` takes them positionally as `(teacher,
    student)`, and a swapped pair would train the teacher, so a positional
    call is refused. Only the student's weights are trained; the teacher's
    `trainable` flag is left as it was, so a model can be the teacher of one
    Distiller and the student of another. A batch whose inputs or logits hold
    a NaN or an infinity stops `fit` and `evaluate` with a
    `keras_kd.callbacks.NonFiniteInputError` naming the step, before any
    weight changes (under XLA, which drops assertions, its loss is logged as
    NaN instead).

    Args:
        teacher: a Keras model (or `keras_kd.Ensemble`) returning logits.
        student: a Keras model returning logits.
        loss: a `keras_kd.losses.DistillationLoss`, or the name of a
            registered one (`keras_kd.losses.LOSSES`: `"kl"`, the default,
            `"reverse_kl"`, `"logit_mse"`). Saved and reloaded with the
            Distiller (register a loss of your own as a Keras serializable).
        alpha: weight of the hard-label loss, in [0, 1]; 0 (the default) is
            pure distillation. With a loss given by name only.
        temperature: softening temperature of the soft loss, > 0 (default
            4). With a loss given by name only.

    Example:

    >>> teacher = keras_kd.models.get("mlp", (8, 8, 1), 10)
    >>> student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(32,))
    >>> distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.1,
    ...                                 temperature=4)
    >>> distiller.compile(optimizer="adam")
    >>> x = np.random.rand(64, 8, 8, 1); y = np.random.randint(0, 10, 64)
    >>> history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
    >>> sorted(history.history)
    ['agreement', 'hard_loss', 'loss', 'predictive_kl', 'soft_loss', 'student_accuracy', 'student_ece']
    >>> keras_kd.Distiller(teacher=teacher, student=student, loss="logit_mse").distillation_loss
    LogitMatching(alpha=0.0, temperature=4.0)
    """

    def __init__(self, *args, teacher=None, student=None, loss=None, alpha=None,
                 temperature=None, **kwargs):
        _check_roles(args, teacher, student)
        kwargs.setdefault("name", "distiller")
        super().__init__(**kwargs)
        distillation_loss = distillation_loss_of(loss, alpha, temperature)
        _check_class_counts(models.num_classes(student), models.num_classes(teacher))
        _check_models(student, teacher)
        # The teacher's own `trainable` is left as the user set it: only the
        # student's weights are trained (see `trainable_weights`), and the
        # teacher runs in inference mode, so the same model can be a teacher
        # here and a student elsewhere.
        self.student = student
        self.teacher = teacher
        self.distillation_loss = distillation_loss
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.fidelity = fidelity_lib.Fidelity()
        if student.built:
            self.built = True

    @property
    def alpha(self):
        """The loss's weight of the hard labels (`None` for a loss without one)."""
        return getattr(self.distillation_loss, "alpha", None)

    @property
    def temperature(self):
        """The loss's temperature (`None` for a loss without one)."""
        return getattr(self.distillation_loss, "temperature", None)

    @property
    def trainable_weights(self):
        """The student's trainable weights: the teacher is never trained, so
        its weights stay out of the optimizer and its state."""
        return list(self.student.trainable_weights) if self.trainable else []

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        trained = {id(variable) for variable in self.trainable_weights}
        return [variable for variable in self.weights if id(variable) not in trained]

    @property
    def non_trainable_variables(self):
        trained = {id(variable) for variable in self.trainable_weights}
        return [variable for variable in self.variables if id(variable) not in trained]

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Configures training; the loss is the Distiller's own.

        Args:
            optimizer: the student's optimizer.
            loss: must be `None`: the loss is the Distiller's (`loss=` of the
                constructor).
            metrics: optional extra metrics of the student against labels.
            **kwargs: passed to `keras.Model.compile`.
        """
        if loss is not None:
            raise ValueError(
                "A Distiller's loss is given when it is built, Distiller(..., loss=...); "
                f"compile it without `loss` (got loss={loss!r})."
            )
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        if self.built:
            # Built now, a Distiller saved before `fit` restores its optimizer.
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`, after a look at the first batch: a student whose
        outputs (or teacher logits carried by the batch) look like
        probabilities, not logits, gets a warning. The teacher is not called
        for it: a teacher runs only inside the Distiller's steps.

        Raises:
            keras_kd.callbacks.NonFiniteInputError: a batch's inputs or
                either model's logits hold a NaN or an infinity; the step is
                named, and no weight was changed by it.
        """
        self._warn_on_probabilities(x)
        with _non_finite_as_error():
            return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`; a batch holding a NaN or an infinity (inputs
        or logits) raises `keras_kd.callbacks.NonFiniteInputError`."""
        with _non_finite_as_error():
            return super().evaluate(x, y, *args, **kwargs)

    def _warn_on_probabilities(self, x):
        if isinstance(x, tf.data.Dataset):
            sample = next(iter(x.take(1)), None)
        elif x is not None and hasattr(x, "shape"):
            sample = x[:32]
        else:
            return  # a generator or a PyDataset: not worth a pass of its own
        if sample is None:
            return
        batch = batch_lib.unpack(sample)
        outputs = {"student's outputs": self.student(batch.x, training=False)}
        if batch.teacher_logits is not None:
            outputs["batch's teacher_logits"] = batch.teacher_logits
        for role, values in outputs.items():
            if _look_like_probabilities(values):
                warnings.warn(
                    f"The {role} on the first batch are all in [0, 1] and sum to "
                    "1 per example: they look like probabilities. The Distiller expects "
                    "logits; remove the final softmax.",
                    stacklevel=3,
                )

    def compile_from_config(self, config):
        """Recompiles a loaded Distiller (Keras skips overridden `compile`s)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        trackers = [
            self.loss_tracker,
            self.hard_loss_tracker,
            self.soft_loss_tracker,
            *self.fidelity.metrics,
        ]
        if keras_compat.compile_metrics(self) is not None:
            trackers.append(keras_compat.compile_metrics(self))
        return trackers

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def train_step(self, data):
        batch = batch_lib.unpack(data)
        teacher_logits = self._teacher_logits(batch)
        student_weights = self.student.trainable_weights
        with tf.GradientTape() as tape:
            student_logits = self.student(batch.x, training=True)
            terms = self._per_example_terms(batch, teacher_logits, student_logits)
            per_example_loss = terms[0] + terms[1]
            loss = tf.nn.compute_average_loss(
                per_example_loss,
                global_batch_size=batch_lib.global_batch_size(per_example_loss),
            )
            regularization = self._regularization_loss()
            loss += tf.nn.scale_regularization_loss(regularization)
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, student_weights)
        finite, finite_checks = _finite_checks(
            batch, teacher_logits, student_logits, "training step", self.optimizer.iterations + 1
        )
        with tf.control_dependencies(
            _label_checks(batch, student_logits.shape[-1]) + finite_checks
        ):
            # Bad labels or non-finite values stop the step before any weight changes
            # (one IdentityN op holds every gradient behind the checks).
            present = [g for g in gradients if g is not None]
            checked = iter(tf.identity_n(present) if present else [])
            gradients = [g if g is None else next(checked) for g in gradients]
        self.optimizer.apply_gradients(zip(gradients, student_weights))
        return self._update_metrics(
            batch, teacher_logits, student_logits, _poisoned(terms, finite), regularization
        )

    def test_step(self, data):
        batch = batch_lib.unpack(data)
        teacher_logits = self._teacher_logits(batch)
        student_logits = self.student(batch.x, training=False)
        terms = self._per_example_terms(batch, teacher_logits, student_logits)
        finite, finite_checks = _finite_checks(
            batch, teacher_logits, student_logits, "an evaluation batch"
        )
        with tf.control_dependencies(
            _label_checks(batch, student_logits.shape[-1]) + finite_checks
        ):
            terms = [tf.identity(term) for term in _poisoned(terms, finite)]
        return self._update_metrics(
            batch, teacher_logits, student_logits, terms, self._regularization_loss()
        )

    def predict_step(self, data):
        return self.student(batch_lib.unpack(data).x, training=False)

    def backup_variables(self):
        """What a backup must hold to resume training: the student's variables
        and the optimizer's state, not the frozen teacher's weights
        (see `keras_kd.callbacks.BackupAndRestore`)."""
        variables = list(self.student.variables)
        if self.optimizer is not None:
            variables += list(self.optimizer.variables)
        return variables

    def export(self, filepath, format="tf_saved_model", verbose=None, **kwargs):
        """Exports the student (not the teacher) for inference."""
        return self.student.export(filepath, format=format, verbose=verbose, **kwargs)

    def _teacher_logits(self, batch):
        return tf.stop_gradient(fidelity_lib.teacher_logits(batch, self.teacher))

    def _per_example_terms(self, batch, teacher_logits, student_logits):
        """The `(hard, soft)` loss terms per example, sample weights applied."""
        _check_class_counts(
            student_logits.shape[-1],
            teacher_logits.shape[-1],
            "teacher" if batch.teacher_logits is None else "batch's teacher_logits",
        )
        loss = self.distillation_loss
        if loss.uses_labels and batch.y is None:
            user = (f"{loss!r}: alpha={loss.alpha} weights a hard-label loss"
                    if getattr(loss, "alpha", None) else f"The loss {loss!r} uses labels")
            raise ValueError(f"{user}, but the batch has no labels; pass labels or use alpha=0.")
        terms = loss.compute_terms(
            teacher_logits, student_logits, batch.y, **_loss_extras(loss, batch))
        terms = tuple(_per_example(term, loss) for term in terms)
        if batch.sample_weight is not None:
            weight = tf.reshape(tf.cast(batch.sample_weight, "float32"), [-1])
            terms = tuple(term * weight for term in terms)
        return terms

    def _regularization_loss(self):
        if not self.student.losses:
            return tf.constant(0.0)
        return tf.cast(tf.add_n(self.student.losses), "float32")

    def _update_metrics(self, batch, teacher_logits, student_logits, terms, regularization):
        # Trackers are fed per-example values, and their state is summed across
        # replicas on read, so the logged numbers are true global means.
        hard, soft = terms
        self.loss_tracker.update_state(hard + soft + regularization)
        self.hard_loss_tracker.update_state(hard)
        self.soft_loss_tracker.update_state(soft)
        self.fidelity.update_state(batch, teacher_logits, student_logits)
        if batch.y is not None and keras_compat.compile_metrics(self) is not None:
            keras_compat.compile_metrics(self).update_state(
                batch.y, student_logits, batch_lib.labeled_weight(batch)
            )
        return self.get_metrics_result()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "loss": keras.saving.serialize_keras_object(self.distillation_loss),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher", "loss"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _loss_extras(loss, batch):
    """What the batch carries beyond labels for the loss: its hard-label mask
    and per-example temperatures, each only when present; a loss that
    cannot take one is refused by name."""
    extras = batch_lib.loss_extras(batch)
    refused = [name for name in extras if not _accepts(loss, name)]
    if refused:
        raise TypeError(
            f"The batches carry {', '.join(refused)} (synthetic inputs of their own, say), "
            f"but {type(loss).__name__}.compute_loss takes no such argument; accept it (or "
            "**kwargs) to use this distillation set.")
    return extras


def _accepts(loss, name):
    method = loss.compute_loss
    if type(loss).compute_terms is not losses.DistillationLoss.compute_terms:
        method = loss.compute_terms
    parameters = inspect.signature(method).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _per_example(term, loss):
    """A loss term as `[batch]` float32; a loss that reduced the batch itself is refused."""
    term = tf.cast(term, "float32")
    if term.shape.rank != 1:
        raise ValueError(
            f"{type(loss).__name__} returned a loss of shape {term.shape}; a distillation "
            "loss gives one value per example, shape [batch] (the Distiller averages it "
            "over the global batch).")
    return term


def _check_roles(args, teacher, student):
    """Refuses positional models and missing or identical ones, by name."""
    if args:
        raise TypeError(
            "Distiller takes its models by keyword: Distiller(teacher=..., student=...); got "
            f"{len(args)} positional argument(s). keras.distillation.Distiller takes (teacher, "
            "student) and earlier keras_kd took (student, teacher), so a positional call is "
            "refused rather than guessed: the wrong guess trains the teacher."
        )
    for role, model in (("teacher", teacher), ("student", student)):
        if model is None:
            raise TypeError(f"Distiller needs {role}=, a Keras model returning logits.")
    if teacher is student:
        raise ValueError(
            f"The teacher and the student are the same model ({student.name!r}); distill "
            "into a separate model (keras.models.clone_model, say)."
        )
    if not student.trainable:
        raise ValueError(
            f"The student {student.name!r} has trainable=False, so nothing would train; "
            "set student.trainable = True."
        )


# Marks the Distiller's own assertions among TensorFlow's errors.
_NON_FINITE = "keras_kd: non-finite values (NaN or inf)"


def _finite_checks(batch, teacher_logits, student_logits, where, step=None):
    """`(finite, assertions)`: whether the batch's float inputs and both
    models' logits are all finite, and graph-mode assertions of it.

    XLA drops assertions; `finite` then poisons the logged loss (see
    `_poisoned`), which `keras_kd.callbacks.StopOnNonFiniteLoss` stops on.
    """
    parts = [("the batch's inputs", tensor) for tensor in tf.nest.flatten(batch.x)
             if tensor.dtype.is_floating]
    parts += [("the batch's " + name.replace("_", " ") + "s", getattr(batch, name))
              for name in ("sample_weight", "temperature")
              if getattr(batch, name) is not None and getattr(batch, name).dtype.is_floating]
    parts += [("the teacher's logits", teacher_logits), ("the student's logits", student_logits)]
    finite = tf.constant(True)
    checks = []
    for name, tensor in parts:
        part_finite = tf.reduce_all(tf.math.is_finite(tensor))
        finite = tf.logical_and(finite, part_finite)
        data = [f"{_NON_FINITE} in {name}, {where}"] + ([] if step is None else [step])
        checks.append(tf.debugging.Assert(part_finite, data, summarize=1))
    return finite, [check for check in checks if check is not None]


def _poisoned(terms, finite):
    """The loss terms, NaN when the batch held a non-finite value: its loss is
    logged as what it is, never as a finite-looking 0."""
    return tuple(tf.where(finite, term, tf.fill(tf.shape(term), float("nan"))) for term in terms)


@contextlib.contextmanager
def _non_finite_as_error():
    """Turns the Distiller's non-finite assertion into a `NonFiniteInputError`
    that names the values and the step, without a graph traceback."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        found = re.search(r"\[(" + re.escape(_NON_FINITE) + r"[^\]]*)\](?: \[(\d+)\])?",
                          error.message)
        if found is None:
            raise
        # TensorFlow prints the assertion's strings with quotes escaped.
        message = found.group(1).replace("keras_kd: n", "N").replace("\\'", "'")
        if found.group(2):
            message += f" {found.group(2)}"
        raise callbacks.NonFiniteInputError(f"{message}. {_likely_cause(message)}") from None


def _likely_cause(message):
    if "the student's logits" in message:
        return ("The student's weights overflowed, or its inputs did (is the learning rate "
                "too large?).")
    if "the teacher's logits" in message:
        return "Check the teacher (or the teacher logits the batches carry)."
    return "Check the data: a loss of non-finite values means nothing."


def _look_like_probabilities(outputs):
    values = tf.cast(outputs, "float32")
    sums = tf.reduce_sum(values, axis=-1)
    return bool(
        tf.reduce_all(values >= 0.0) and tf.reduce_all(values <= 1.0)
        and tf.reduce_all(tf.abs(sums - 1.0) < 1e-3)
    )


def _label_checks(batch, num_classes):
    """Assertions that integer labels lie in [0, num_classes) (graph mode ops)."""
    labels = batch.y
    if labels is None or not labels.dtype.is_integer:
        return []
    if batch.hard_label_mask is not None:
        # Unlabeled examples may carry any placeholder label.
        mask = tf.reshape(batch.hard_label_mask, tf.shape(labels))
        labels = tf.where(mask > 0, labels, tf.zeros_like(labels))
    message = f"labels must be integers in [0, {num_classes}), the class count"
    checks = [
        tf.debugging.assert_non_negative(labels, message=message),
        tf.debugging.assert_less(labels, tf.cast(num_classes, labels.dtype), message=message),
    ]
    return [check for check in checks if check is not None]
