"""Per-example distillation losses, computed from logits.

Every function returns one value per example (shape `[batch]`); reducing over
the (global) batch is the caller's job. All are computed in float32 from
log-softmax, with no probability clipping.
"""

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
    hard = soft = ops.zeros_like(_float32(student_logits)[:, 0])
    if alpha > 0.0:
        if hard_label_mask is None:
            hard = hard_label_cross_entropy(labels, student_logits)
        else:
            mask = ops.reshape(hard_label_mask, (-1,))
            if not labels_are_distributions(labels, student_logits):
                # Unlabeled examples may carry any placeholder label (-1, say).
                labels = ops.where(mask > 0, class_ids(labels), 0)
            hard = hard_label_cross_entropy(labels, student_logits)
            hard = hard * _float32(mask)
        hard = alpha * hard
    if alpha < 1.0:
        temperature_squared = ops.square(_float32(temperature))
        soft = soft_target_kl(teacher_logits, student_logits, temperature)
        soft = (1.0 - alpha) * temperature_squared * soft
    return hard, soft
