"""Fidelity and calibration metrics as streaming Keras metrics.

Fidelity metrics compare a student with its teacher at temperature 1 and take
`update_state(teacher_logits, student_logits, sample_weight=None)`:

- `Agreement`: mean of 1[argmax t = argmax s] (top-k: the teacher's top-1 class
  within the student's top k).
- `PredictiveKL`: mean KL(softmax t || softmax s), in nats.

`ExpectedCalibrationError` and `NegativeLogLikelihood` are of a model against
labels: `update_state(labels, logits, sample_weight=None)`.

`LinearCKA` compares representations rather than predictions:
`update_state(teacher_features, student_features, sample_weight=None)` with
`[batch, features]` activations (see `keras_kd.models.penultimate`).

All are weighted, stream over batches and aggregate across replicas (their
state is sums, synchronized on read).
"""

import keras
from keras import ops

from keras_kd import losses


def _labels_as_ids(labels, logits):
    if losses.labels_are_distributions(labels, logits):
        return ops.argmax(labels, axis=-1)
    return losses.class_ids(labels)


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


@keras.saving.register_keras_serializable(package="keras_kd")
class NegativeLogLikelihood(keras.metrics.MeanMetricWrapper):
    """Mean negative log-likelihood of the labels under a model, in nats.

    `-log softmax(logits)[label]` per example; for label distributions
    (mixed labels), the cross-entropy `-sum_c p_c log softmax(logits)_c`.

    Example:

    >>> m = NegativeLogLikelihood()
    >>> m.update_state(np.array([0, 1]), np.array([[0.0, 0.0], [0.0, 0.0]]))
    >>> round(float(m.result()), 4)  # log 2
    0.6931
    """

    def __init__(self, name="nll", dtype=None):
        super().__init__(losses.hard_label_cross_entropy, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def linear_cka(features_x, features_y):
    """Linear centered kernel alignment of two representations of the same examples.

    `CKA = |Y_c^T X_c|_F^2 / (|X_c^T X_c|_F |Y_c^T Y_c|_F)` for column-centered
    `[examples, features]` matrices (Kornblith et al., 2019): 1 for
    representations equal up to rotation and isotropic scaling, near 0 for
    unrelated ones. The feature counts may differ.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(100, 5))
    >>> round(linear_cka(x, 3.0 * x), 6), round(linear_cka(x, x[:, :1]), 2) < 1
    (1.0, True)
    """
    metric = LinearCKA()
    metric.update_state(features_x, features_y)
    return float(metric.result())


@keras.saving.register_keras_serializable(package="keras_kd")
class LinearCKA(keras.metrics.Metric):
    """Linear CKA between teacher and student features, streamed over batches.

    Keeps the (weighted) sums and cross-products of both feature sets in
    float64, from which the centered cross-covariances are formed on
    `result()`, so batches of any size (and replicas, whose states are summed)
    give the CKA of the whole set. See `linear_cka` for the definition.

    Args:
        name: the metric's name.
        dtype: the dtype of `result()`.

    Example:

    >>> m = LinearCKA()
    >>> x = np.random.default_rng(0).normal(size=(64, 8))
    >>> m.update_state(x[:32], x[:32] @ np.eye(8)[::-1])
    >>> m.update_state(x[32:], x[32:] @ np.eye(8)[::-1])
    >>> round(float(m.result()), 6)
    1.0
    """

    def __init__(self, name="linear_cka", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self._state = None

    def build_state(self, x_features, y_features):
        """Makes the metric's variables for `x_features` teacher and
        `y_features` student features (else the first update does), so that
        every update, the first too, can run traced."""
        if self._state is not None:
            return

        def variable(name, shape):
            return self.add_variable(
                shape=shape, initializer="zeros", dtype="float64", name=name
            )

        self._state = {
            "count": variable("count", ()),
            "sum_x": variable("sum_x", (x_features,)),
            "sum_y": variable("sum_y", (y_features,)),
            "xx": variable("xx", (x_features, x_features)),
            "yy": variable("yy", (y_features, y_features)),
            "yx": variable("yx", (y_features, x_features)),
        }

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: `y_true` the teacher's features, `y_pred` the student's."""
        x = _as_matrix(y_true)
        y = _as_matrix(y_pred)
        if self._state is None:
            if x.shape[-1] is None or y.shape[-1] is None:
                raise ValueError(
                    "LinearCKA needs a static feature count; got feature shapes "
                    f"{x.shape} and {y.shape}."
                )
            self.build_state(x.shape[-1], y.shape[-1])
        weights = ops.ones_like(x[:, 0])
        if sample_weight is not None:
            weights = ops.reshape(ops.cast(sample_weight, "float64"), (-1,))
        weighted_x = x * ops.expand_dims(weights, -1)
        state = self._state
        state["count"].assign_add(ops.sum(weights))
        state["sum_x"].assign_add(ops.sum(weighted_x, axis=0))
        state["sum_y"].assign_add(ops.sum(y * ops.expand_dims(weights, -1), axis=0))
        state["xx"].assign_add(ops.matmul(ops.transpose(weighted_x), x))
        state["yy"].assign_add(
            ops.matmul(ops.transpose(y * ops.expand_dims(weights, -1)), y)
        )
        state["yx"].assign_add(ops.matmul(ops.transpose(y), weighted_x))

    def result(self):
        if self._state is None:
            return ops.cast(0.0, self.dtype)
        state = self._state
        count = ops.maximum(state["count"], 1e-12)
        mean_x = state["sum_x"] / count
        mean_y = state["sum_y"] / count

        def centered(products, mean_a, mean_b):
            # sum w (a - mu_a)(b - mu_b)^T = sum w a b^T - n mu_a mu_b^T
            return products - count * ops.outer(mean_a, mean_b)

        cross = centered(state["yx"], mean_y, mean_x)
        norm_x = ops.sqrt(ops.sum(ops.square(centered(state["xx"], mean_x, mean_x))))
        norm_y = ops.sqrt(ops.sum(ops.square(centered(state["yy"], mean_y, mean_y))))
        cka = ops.divide_no_nan(ops.sum(ops.square(cross)), norm_x * norm_y)
        return ops.cast(cka, self.dtype)

    def reset_state(self):
        for variable in (self._state or {}).values():
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _as_matrix(features):
    features = ops.cast(features, "float64")
    if len(features.shape) != 2:
        features = ops.reshape(features, (ops.shape(features)[0], -1))
    return features
