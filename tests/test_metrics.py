import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_kd import metrics
from tests import reference


def _batches(*arrays, size=7):
    n = len(arrays[0])
    for start in range(0, n, size):
        yield tuple(a[start:start + size] for a in arrays)


def test_agreement_streams_weighted_top1(rng):
    teacher = rng.normal(size=(40, 6)).astype("float32")
    student = rng.normal(size=(40, 6)).astype("float32")
    weights = rng.uniform(size=40).astype("float32")
    metric = metrics.Agreement()
    for t, s, w in _batches(teacher, student, weights):
        metric.update_state(t, s, sample_weight=w)
    agree = teacher.argmax(-1) == student.argmax(-1)
    assert float(metric.result()) == pytest.approx((weights * agree).sum() / weights.sum(), rel=1e-5)
    assert 0 < agree.mean() < 1  # the data exercises both outcomes


def test_top_k_agreement_counts_teacher_class_in_student_top_k(rng):
    teacher = rng.normal(size=(50, 6)).astype("float32")
    student = rng.normal(size=(50, 6)).astype("float32")
    metric = metrics.Agreement(k=3)
    metric.update_state(teacher, student)
    top3 = np.argsort(-student, axis=-1)[:, :3]
    expected = np.mean([t in row for t, row in zip(teacher.argmax(-1), top3)])
    assert float(metric.result()) == pytest.approx(expected)
    top1 = metrics.Agreement()
    top1.update_state(teacher, student)
    assert float(metric.result()) > float(top1.result())


def test_predictive_kl_streams_weighted_mean(rng):
    teacher = rng.normal(size=(30, 5)).astype("float32") * 2
    student = rng.normal(size=(30, 5)).astype("float32") * 2
    weights = rng.uniform(size=30).astype("float32")
    metric = metrics.PredictiveKL()
    for t, s, w in _batches(teacher, student, weights):
        metric.update_state(t, s, sample_weight=w)
    expected = (weights * reference.kl(teacher, student)).sum() / weights.sum()
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    metric.update_state(teacher, teacher)
    assert float(metric.result()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_streams_weighted_equal_width_bins(rng, num_bins):
    logits = rng.normal(size=(200, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, size=200)
    weights = rng.uniform(size=200).astype("float32")
    metric = metrics.ExpectedCalibrationError(num_bins=num_bins)
    for y, s, w in _batches(labels, logits, weights, size=33):
        metric.update_state(y, s, sample_weight=w)
    expected = reference.ece(labels, logits, num_bins, weights)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-4)


def test_ece_of_one_hot_labels_equals_ids(rng):
    logits = rng.normal(size=(20, 4)).astype("float32")
    labels = rng.integers(0, 4, size=20)
    a, b = metrics.ExpectedCalibrationError(), metrics.ExpectedCalibrationError()
    a.update_state(labels, logits)
    b.update_state(np.eye(4, dtype="float32")[labels], logits)
    assert float(a.result()) == pytest.approx(float(b.result()))


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_nll_streams_the_weighted_formula_and_is_stable(rng, offset):
    logits = (rng.normal(size=(50, 6)) * 4 + offset).astype("float32")
    labels = rng.integers(0, 6, size=50)
    weights = rng.uniform(size=50).astype("float32")
    metric = metrics.NegativeLogLikelihood()
    for y, s, w in _batches(labels, logits, weights, size=16):
        metric.update_state(y, s, sample_weight=w)
    expected = reference.nll(labels, logits, weights)
    assert np.isfinite(float(metric.result()))
    assert float(metric.result()) == pytest.approx(expected, rel=1e-4)
    mixed = rng.dirichlet(np.ones(6), size=50).astype("float32")
    metric.reset_state()
    metric.update_state(mixed, logits)
    assert float(metric.result()) == pytest.approx(reference.nll(mixed, logits), rel=1e-4)
    metric.reset_state()
    metric.update_state(labels[:, None], logits)  # [batch, 1] ids mean what [batch] ids mean
    assert float(metric.result()) == pytest.approx(reference.nll(labels, logits), rel=1e-4)


def test_metrics_aggregate_across_replicas(rng, mirrored):
    strategy = mirrored
    teacher = rng.normal(size=(32, 5)).astype("float32")
    student = rng.normal(size=(32, 5)).astype("float32")
    labels = rng.integers(0, 5, size=32).astype("int32")
    with strategy.scope():
        agreement = metrics.Agreement()
        kl = metrics.PredictiveKL()
        ece = metrics.ExpectedCalibrationError()
        nll = metrics.NegativeLogLikelihood()
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((teacher, student, labels)).batch(16)
    )

    @tf.function
    def update(t, s, y):
        agreement.update_state(t, s)
        kl.update_state(t, s)
        ece.update_state(y, s)
        nll.update_state(y, s)

    for t, s, y in dataset:
        strategy.run(update, args=(t, s, y))
    assert float(agreement.result()) == pytest.approx(np.mean(teacher.argmax(-1) == student.argmax(-1)))
    assert float(kl.result()) == pytest.approx(reference.kl(teacher, student).mean(), rel=1e-5)
    assert float(ece.result()) == pytest.approx(reference.ece(labels, student, 15), rel=1e-4)
    assert float(nll.result()) == pytest.approx(reference.nll(labels, student), rel=1e-5)


def test_metrics_serialize():
    for metric in (metrics.Agreement(k=2), metrics.PredictiveKL(), metrics.ExpectedCalibrationError(7),
                   metrics.NegativeLogLikelihood(name="test_nll")):
        clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
        assert type(clone) is type(metric) and clone.get_config() == metric.get_config()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: metrics.Agreement(k=0), "k=0"),
        (lambda: metrics.ExpectedCalibrationError(num_bins=0), "num_bins=0"),
    ],
)
def test_metric_arguments_are_checked(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def _numpy_linear_cka(x, y):
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_linear_cka_streams_to_the_formula_on_the_whole_set(rng):
    x = rng.normal(size=(90, 12)) + 3.0  # an offset the centering must remove
    y = np.tanh(x[:, :5] @ rng.normal(size=(5, 7))) + rng.normal(size=(90, 7)) * 0.3
    metric = metrics.LinearCKA()
    for xb, yb in _batches(x, y, size=13):
        metric.update_state(xb, yb)
    expected = _numpy_linear_cka(x, y)
    assert 0.1 < expected < 0.9
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    metric.update_state(x[:30], y[:30])
    assert float(metric.result()) == pytest.approx(_numpy_linear_cka(x[:30], y[:30]), rel=1e-5)


def test_linear_cka_is_invariant_to_rotation_and_scale_not_to_mixing(rng):
    x = rng.normal(size=(200, 6))
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert metrics.linear_cka(x, 5.0 * x @ rotation) == pytest.approx(1.0, abs=1e-5)
    assert metrics.linear_cka(x, rng.normal(size=(200, 6))) < 0.1
    weights = np.repeat([1.0, 0.0], 100)  # zero weight drops examples
    metric = metrics.LinearCKA()
    metric.update_state(x, np.concatenate([x[:100], rng.normal(size=(100, 6))]), weights)
    assert float(metric.result()) == pytest.approx(1.0, abs=1e-5)


def test_linear_cka_sums_over_replicas(mirrored, rng):
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 3)) + rng.normal(size=(64, 3))).astype("float32")
    with mirrored.scope():
        metric = metrics.LinearCKA()
        metric.update_state(x[:2], y[:2])  # builds the state in the scope
        metric.reset_state()
    batches = mirrored.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    )

    @tf.function
    def update(batch):
        mirrored.run(metric.update_state, args=batch)

    for batch in batches:
        update(batch)
    assert float(metric.result()) == pytest.approx(_numpy_linear_cka(x, y), rel=1e-4)
