"""Distillation losses, computed from logits: functions and loss objects.

Every function, and every loss object's `compute_loss`, returns one value per
example (shape `[batch]`); reducing over the (global) batch is the caller's
job. All are computed in float32 from log-softmax, with no probability
clipping. A `Distiller` takes a `DistillationLoss` (or the name of a
registered one, `LOSSES`); the default is `KLDistillation`.
"""

import keras
from keras import ops


def _float32(x):
    return ops.cast(x, "float32")


def _per_example_column(value, rank):
    """Broadcasts a scalar or per-example `[batch]` value against logits."""
    value = _float32(value)
    if len(value.shape) == 1 and rank > 1:
        value = ops.expand_dims(value, -1)
    return value


def labels_are_distributions(labels, logits):
    """Whether `labels` are per-class distributions rather than class ids.

    Distributions (one-hot or mixed labels) have one column per class, like
    the logits; anything else holds class ids, `[batch]` or `[batch, 1]`
    (the shape `keras.datasets` returns, which Keras' sparse losses accept).

    Example:

    >>> logits = np.zeros((2, 3))
    >>> labels_are_distributions(np.array([[0], [2]]), logits)
    False
    >>> labels_are_distributions(np.eye(3)[[0, 2]], logits)
    True
    """
    if len(labels.shape) != len(logits.shape):
        return False
    classes, width = logits.shape[-1], labels.shape[-1]
    if classes is None or width is None:
        return True  # same rank, widths unknown: read as distributions, as before
    return width == classes


def class_ids(labels):
    """Class-id labels of shape `[batch]` or `[batch, 1]` as `[batch]`."""
    return ops.reshape(labels, (-1,))


def soft_target_kl(teacher_logits, student_logits, temperature=1.0):
    """KL(softmax(t / T) || softmax(s / T)) per example, in nats.

    Args:
        teacher_logits: `[batch, classes]` teacher logits.
        student_logits: `[batch, classes]` student logits.
        temperature: a positive scalar, or a `[batch]` tensor of per-example
            temperatures.

    Returns:
        A `[batch]` float32 tensor.

    Example:

    >>> logits = np.array([[2.0, 0.0, -1.0]])
    >>> float(soft_target_kl(logits, logits)[0])
    0.0
    """
    temperature = _per_example_column(temperature, len(teacher_logits.shape))
    teacher_log_probs = ops.log_softmax(_float32(teacher_logits) / temperature)
    student_log_probs = ops.log_softmax(_float32(student_logits) / temperature)
    return ops.sum(
        ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
        axis=-1,
    )


def hard_label_cross_entropy(labels, student_logits):
    """Cross-entropy of the student against labels, per example.

    Args:
        labels: `[batch]` or `[batch, 1]` integer class ids, or
            `[batch, classes]` label distributions (one-hot or mixed labels).
        student_logits: `[batch, classes]` logits.

    Returns:
        A `[batch]` float32 tensor.
    """
    student_logits = _float32(student_logits)
    if labels_are_distributions(labels, student_logits):
        return -ops.sum(_float32(labels) * ops.log_softmax(student_logits), axis=-1)
    return ops.sparse_categorical_crossentropy(
        class_ids(labels), student_logits, from_logits=True
    )


def distillation_loss(
    labels,
    teacher_logits,
    student_logits,
    alpha,
    temperature,
    hard_label_mask=None,
):
    """The blended distillation loss per example.

    `alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`.
    `alpha` is the weight of the hard-label loss: `alpha=0` is pure
    distillation and needs no labels. The `T^2` factor keeps the soft term's
    gradient scale independent of the temperature.

    Args:
        labels: integer labels or label distributions; ignored (and may be
            `None`) when `alpha == 0`.
        teacher_logits: `[batch, classes]`.
        student_logits: `[batch, classes]`.
        alpha: a Python float in [0, 1].
        temperature: a positive scalar or a `[batch]` tensor.
        hard_label_mask: optional `[batch]` tensor, 1 where the example has a
            label; unlabeled examples contribute only the soft term.

    Returns:
        A `[batch]` float32 tensor.
    """
    hard, soft = distillation_loss_terms(
        labels, teacher_logits, student_logits, alpha, temperature, hard_label_mask
    )
    return hard + soft


def distillation_loss_terms(
    labels,
    teacher_logits,
    student_logits,
    alpha,
    temperature,
    hard_label_mask=None,
):
    """The two weighted terms of `distillation_loss`, per example.

    Returns:
        `(hard, soft)`: `alpha * CE(y, s)` and
        `(1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`, each a
        `[batch]` float32 tensor (zeros where its weight is 0). The arguments
        are those of `distillation_loss`.
    """
    return KLDistillation(alpha=alpha).compute_terms(
        teacher_logits, student_logits, labels, hard_label_mask=hard_label_mask,
        temperature=temperature)


def reverse_soft_target_kl(teacher_logits, student_logits, temperature=1.0):
    """KL(softmax(s / T) || softmax(t / T)) per example, in nats: the student's
    distribution against the teacher's, mode-seeking where the forward KL
    (`soft_target_kl`) is mass-covering. Arguments as `soft_target_kl`'s.

    Example:

    >>> teacher = np.array([[3.0, 0.0, 0.0]])
    >>> student = np.array([[1.0, 1.0, 0.0]])
    >>> round(float(reverse_soft_target_kl(teacher, student)[0]), 4)
    0.8106
    >>> round(float(soft_target_kl(teacher, student)[0]), 4)
    0.5407
    """
    return soft_target_kl(student_logits, teacher_logits, temperature)


def logit_squared_error(teacher_logits, student_logits, temperature=1.0):
    """Mean over classes of `(t - s)^2`, per example: matching the logits
    themselves (Ba and Caruana, 2014), what `T^2 * KL` approaches as `T` grows
    for zero-mean logits (Hinton et al., 2015; the study's section 3.1).

    `temperature` is accepted for a uniform signature and has no effect:
    `T^2 * mean((t/T - s/T)^2)` is the same number at every `T`.

    Example:

    >>> float(logit_squared_error(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]]))[0])
    2.5
    """
    del temperature
    difference = _float32(teacher_logits) - _float32(student_logits)
    return ops.mean(ops.square(difference), axis=-1)


def _zeros_per_example(logits):
    return ops.zeros_like(_float32(logits)[:, 0])


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationLoss:
    """Base class of a `Distiller`'s loss: per example, from logits.

    Subclasses implement `compute_loss(teacher_logits, student_logits,
    labels=None, **kwargs)`, returning a `[batch]` float32 tensor, one value
    per example; the `Distiller` averages it over the *global* batch (so a
    step is the same on one device, N replicas or N workers), adds the
    student's regularization losses and reports it as `loss`. A loss may
    split itself into `compute_terms` (`(hard, soft)`: the label and the
    teacher parts, reported as `hard_loss` and `soft_loss`); by default the
    whole loss is the soft part.

    Keyword arguments a batch may carry are passed only when it carries
    them: `hard_label_mask` (`[batch]`, 1 where the example has a label) and
    `temperature` (`[batch]`, per-example temperatures of synthetic inputs);
    a loss that does not accept one is refused when a batch has it.

    Set `uses_labels` to `True` for a loss that needs labels (the
    `Distiller` refuses unlabeled batches then). Register a subclass with
    `keras.saving.register_keras_serializable` and give it `get_config`, so
    that a saved `Distiller` reloads with it; `register_loss` also makes it
    a `--loss` of the apps.

    Example:

    >>> class HalfKL(keras_kd.losses.DistillationLoss):
    ...     def compute_loss(self, teacher_logits, student_logits, labels=None):
    ...         return 0.5 * keras_kd.losses.soft_target_kl(teacher_logits, student_logits)
    >>> loss = HalfKL()
    >>> teacher = np.array([[2.0, 0.0]]); student = np.array([[0.0, 2.0]])
    >>> round(float(loss.compute_loss(teacher, student)[0]), 4)
    0.7616
    """

    uses_labels = False

    def compute_loss(self, teacher_logits, student_logits, labels=None, **kwargs):
        """The loss per example: a `[batch]` float32 tensor."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute_loss(teacher_logits, "
            "student_logits, labels=None), returning one value per example.")

    def compute_terms(self, teacher_logits, student_logits, labels=None, **kwargs):
        """`(hard, soft)` per example, summing to `compute_loss`: the label
        part and the teacher part (here: none, and the whole loss)."""
        soft = _float32(self.compute_loss(teacher_logits, student_logits, labels, **kwargs))
        return ops.zeros_like(soft), soft

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        settings = ", ".join(f"{name}={value!r}" for name, value in self.get_config().items())
        return f"{type(self).__name__}({settings})"


class BlendedLoss(DistillationLoss):
    """`alpha * CE(y, s) + (1 - alpha) * T^2 * divergence(t/T, s/T)` per example.

    The family of the built-in losses: `alpha` weighs the hard-label
    cross-entropy (0 is pure distillation and needs no labels; unlabeled
    examples, `hard_label_mask == 0`, contribute only the soft term), and
    subclasses give the soft term, `soft_term(teacher_logits, student_logits,
    temperature)`, a `[batch]` tensor before the `(1 - alpha) * T^2` weight.
    A batch's own per-example temperatures win over `temperature`.

    Args:
        alpha: weight of the hard-label loss, in [0, 1].
        temperature: softening temperature of the soft term, > 0.
    """

    def __init__(self, alpha=0.0, temperature=4.0):
        if isinstance(alpha, bool) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got alpha={alpha!r}.")
        if isinstance(temperature, bool) or not 0.0 < float(temperature) < float("inf"):
            raise ValueError(
                f"temperature must be > 0 and finite; got temperature={temperature!r}.")
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    @property
    def uses_labels(self):
        return self.alpha > 0.0

    def soft_term(self, teacher_logits, student_logits, temperature):
        raise NotImplementedError

    def compute_loss(self, teacher_logits, student_logits, labels=None, hard_label_mask=None,
                     temperature=None):
        hard, soft = self.compute_terms(
            teacher_logits, student_logits, labels, hard_label_mask=hard_label_mask,
            temperature=temperature)
        return hard + soft

    def compute_terms(self, teacher_logits, student_logits, labels=None, hard_label_mask=None,
                      temperature=None):
        temperature = self.temperature if temperature is None else temperature
        hard = soft = _zeros_per_example(student_logits)
        if self.alpha > 0.0 and labels is not None:
            hard = self.alpha * _masked_cross_entropy(labels, student_logits, hard_label_mask)
        if self.alpha < 1.0:
            soft = self.soft_term(teacher_logits, student_logits, temperature)
            soft = (1.0 - self.alpha) * ops.square(_float32(temperature)) * soft
        return hard, soft

    def get_config(self):
        return {"alpha": self.alpha, "temperature": self.temperature}


def _masked_cross_entropy(labels, student_logits, hard_label_mask=None):
    if hard_label_mask is None:
        return hard_label_cross_entropy(labels, student_logits)
    mask = ops.reshape(hard_label_mask, (-1,))
    if not labels_are_distributions(labels, student_logits):
        # Unlabeled examples may carry any placeholder label (-1, say).
        labels = ops.where(mask > 0, class_ids(labels), 0)
    return hard_label_cross_entropy(labels, student_logits) * _float32(mask)


@keras.saving.register_keras_serializable(package="keras_kd")
class KLDistillation(BlendedLoss):
    """The study's loss (Hinton et al., 2015), the `Distiller`'s default:
    `alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))`.

    Example:

    >>> loss = keras_kd.losses.KLDistillation(temperature=4.0)
    >>> logits = np.array([[2.0, 0.0, -1.0]])
    >>> float(loss.compute_loss(logits, logits)[0])
    0.0
    """

    def soft_term(self, teacher_logits, student_logits, temperature):
        return soft_target_kl(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class ReverseKLDistillation(BlendedLoss):
    """`alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(s/T) || softmax(t/T))`:
    the reverse KL, which penalizes the student's mass where the teacher has
    none and lets it drop the teacher's small modes."""

    def soft_term(self, teacher_logits, student_logits, temperature):
        return reverse_soft_target_kl(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class LogitMatching(BlendedLoss):
    """`alpha * CE(y, s) + (1 - alpha) * mean_c (t_c - s_c)^2`: regress the
    teacher's logits (Ba and Caruana, 2014; Kim et al., 2021, "Comparing
    Kullback-Leibler divergence and mean squared error loss in knowledge
    distillation"). The temperature has no effect (see `logit_squared_error`)."""

    def soft_term(self, teacher_logits, student_logits, temperature):
        # On logits / T, so that the T^2 weight cancels: the same loss at every T.
        temperature = _per_example_column(temperature, len(teacher_logits.shape))
        return logit_squared_error(_float32(teacher_logits) / temperature,
                                   _float32(student_logits) / temperature)


LOSSES = {
    "kl": KLDistillation,
    "reverse_kl": ReverseKLDistillation,
    "logit_mse": LogitMatching,
}


def register_loss(name, loss_class):
    """Makes `loss_class` the loss called `name`, for `get` and `--loss`.

    `loss_class(alpha=..., temperature=...)` builds it from the apps'
    settings: accept both (a loss without labels may ignore `alpha`).

    Example:

    >>> class Halved(keras_kd.losses.KLDistillation):
    ...     def soft_term(self, teacher_logits, student_logits, temperature):
    ...         return 0.5 * super().soft_term(teacher_logits, student_logits, temperature)
    >>> keras_kd.losses.register_loss("halved_kl", Halved)
    >>> keras_kd.losses.get("halved_kl", temperature=2.0)
    Halved(alpha=0.0, temperature=2.0)
    """
    if not isinstance(loss_class, type) or not issubclass(loss_class, DistillationLoss):
        raise TypeError(f"register_loss({name!r}, ...) takes a DistillationLoss subclass; "
                        f"got {loss_class!r}.")
    LOSSES[name] = loss_class


def check_name(name):
    """Raises a ValueError naming `name` when no loss is registered under it."""
    if name not in LOSSES:
        raise ValueError(f"Unknown distillation loss {name!r}; expected one of {sorted(LOSSES)} "
                         "(or register your own with keras_kd.losses.register_loss).")


def as_distillation_loss(distillation):
    """`distillation` as a `DistillationLoss`: itself; a `Distiller`'s loss;
    a `keras_kd.jobs.Distillation`'s `loss_object()`; or, for any other
    object with `alpha` and `temperature`, the `KLDistillation` of those
    settings (`None` stays `None`)."""
    if distillation is None or isinstance(distillation, DistillationLoss):
        return distillation
    if isinstance(getattr(distillation, "distillation_loss", None), DistillationLoss):
        return distillation.distillation_loss
    loss_object = getattr(distillation, "loss_object", None)
    if loss_object is not None:
        return loss_object()
    return KLDistillation(distillation.alpha, distillation.temperature)


def get(identifier, alpha=0.0, temperature=4.0):
    """A `DistillationLoss`: `identifier` itself, or the loss registered
    under that name built with `alpha` and `temperature`.

    Example:

    >>> keras_kd.losses.get("reverse_kl", alpha=0.1)
    ReverseKLDistillation(alpha=0.1, temperature=4.0)
    """
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, str):
        check_name(identifier)
        return LOSSES[identifier](alpha=alpha, temperature=temperature)
    raise TypeError(f"A distillation loss is a DistillationLoss or the name of one "
                    f"({sorted(LOSSES)}); got {identifier!r}.")
