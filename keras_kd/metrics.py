"""Fidelity and calibration metrics as streaming Keras metrics.

Fidelity metrics compare a student with its teacher at temperature 1 and take
`update_state(teacher_logits, student_logits, sample_weight=None)`:

- `Agreement`: mean of 1[argmax t = argmax s] (top-k: the teacher's top-1 class
  within the student's top k).
- `PredictiveKL`: mean KL(softmax t || softmax s), in nats.

`ExpectedCalibrationError` is of a model against labels:
`update_state(labels, logits, sample_weight=None)`.

All are weighted, stream over batches and aggregate across replicas (their
state is sums, synchronized on read).
"""

import keras
from keras import ops

from keras_kd import losses


def _labels_as_ids(labels, logits):
    if len(labels.shape) == len(logits.shape):
        return ops.argmax(labels, axis=-1)
    return ops.reshape(labels, (-1,))


def accuracy(labels, logits):
    """Per-example 1[argmax logits = label]; labels are ids or distributions."""
    labels = ops.cast(_labels_as_ids(labels, logits), "int32")
    predictions = ops.cast(ops.argmax(logits, axis=-1), "int32")
    return ops.cast(ops.equal(labels, predictions), "float32")


def agreement(teacher_logits, student_logits, k=1):
    """Per-example top-1 agreement (or top-k, see `Agreement`).

    Example:

    >>> print(agreement(np.array([[1.0, 0.0]]), np.array([[3.0, 1.0]])).numpy())
    [1.]
    """
    teacher_top1 = ops.argmax(teacher_logits, axis=-1)
    if k == 1:
        student_top1 = ops.argmax(student_logits, axis=-1)
        return ops.cast(ops.equal(teacher_top1, student_top1), "float32")
    return ops.cast(
        ops.in_top_k(teacher_top1, ops.cast(student_logits, "float32"), k),
        "float32",
    )


def predictive_kl(teacher_logits, student_logits):
    """Per-example KL(softmax t || softmax s) in nats."""
    return losses.soft_target_kl(teacher_logits, student_logits, 1.0)


@keras.saving.register_keras_serializable(package="keras_kd")
class Agreement(keras.metrics.MeanMetricWrapper):
    """How often the student predicts the teacher's class.

    Args:
        k: with `k > 1`, an example agrees when the teacher's top-1 class is
            among the student's top `k`.
        name: the metric's name.
        dtype: the metric's dtype.

    Example:

    >>> m = Agreement()
    >>> m.update_state(np.array([[2.0, 0.0], [0.0, 2.0]]),
    ...                np.array([[1.0, 0.0], [1.0, 0.0]]))
    >>> float(m.result())
    0.5
    """

    def __init__(self, k=1, name="agreement", dtype=None):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Agreement needs an integer k >= 1; got k={k!r}.")
        super().__init__(fn=agreement, name=name, dtype=dtype, k=k)
        self.k = k
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}


@keras.saving.register_keras_serializable(package="keras_kd")
class PredictiveKL(keras.metrics.MeanMetricWrapper):
    """Mean KL divergence from the teacher's to the student's distribution.

    Example:

    >>> m = PredictiveKL()
    >>> m.update_state(np.array([[0.0, 0.0]]), np.array([[0.0, 0.0]]))
    >>> float(m.result())
    0.0
    """

    def __init__(self, name="predictive_kl", dtype=None):
        super().__init__(fn=predictive_kl, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_kd")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Expected calibration error of a classifier's top-1 confidence.

    Examples fall into `num_bins` equal-width confidence bins `(lo, hi]`;
    ECE = sum over bins of (bin weight / total weight) *
    |accuracy in bin - mean confidence in bin|.

    Args:
        num_bins: number of confidence bins.
        name: the metric's name.
        dtype: the metric's dtype.

    Example:

    >>> m = ExpectedCalibrationError(num_bins=10)
    >>> m.update_state(np.array([0]), np.array([[0.0, 0.0]]))  # 50% sure, right
    >>> round(float(m.result()), 3)
    0.5
    """

    def __init__(self, num_bins=15, name="ece", dtype=None):
        if not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(
                f"ExpectedCalibrationError needs an integer num_bins >= 1; "
                f"got num_bins={num_bins!r}."
            )
        super().__init__(name=name, dtype=dtype)
        self.num_bins = num_bins
        self._direction = "down"
        self.bin_weight = self._bin_variable("bin_weight")
        self.bin_confidence = self._bin_variable("bin_confidence")
        self.bin_correct = self._bin_variable("bin_correct")

    def _bin_variable(self, name):
        return self.add_variable(
            shape=(self.num_bins,), initializer="zeros", dtype="float32", name=name
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        logits = ops.cast(y_pred, "float32")
        confidence = ops.max(ops.softmax(logits), axis=-1)
        correct = accuracy(y_true, logits)
        bins = ops.clip(
            ops.cast(ops.ceil(confidence * self.num_bins), "int32") - 1,
            0,
            self.num_bins - 1,
        )
        weights = ops.ones_like(confidence)
        if sample_weight is not None:
            weights = weights * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        in_bin = ops.one_hot(bins, self.num_bins) * ops.expand_dims(weights, -1)
        self.bin_weight.assign_add(ops.sum(in_bin, axis=0))
        self.bin_confidence.assign_add(
            ops.sum(in_bin * ops.expand_dims(confidence, -1), axis=0)
        )
        self.bin_correct.assign_add(
            ops.sum(in_bin * ops.expand_dims(correct, -1), axis=0)
        )

    def result(self):
        gaps = ops.sum(ops.abs(self.bin_correct - self.bin_confidence))
        return ops.divide_no_nan(gaps, ops.sum(self.bin_weight))

    def reset_state(self):
        for variable in (self.bin_weight, self.bin_confidence, self.bin_correct):
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_bins": self.num_bins}
