import numpy as np
import pytest

from keras_kd import losses
from tests import reference


def test_soft_target_kl_matches_numpy_at_several_temperatures(rng):
    teacher = rng.normal(size=(16, 7)).astype("float32") * 3
    student = rng.normal(size=(16, 7)).astype("float32") * 3
    for temperature in (0.5, 1.0, 4.0):
        np.testing.assert_allclose(
            losses.soft_target_kl(teacher, student, temperature),
            reference.kl(teacher, student, temperature),
            rtol=1e-5, atol=1e-6,
        )


def test_soft_target_kl_is_stable_for_extreme_logits():
    teacher = np.array([[1000.0, -1000.0, 0.0]], "float32")
    student = np.array([[-1000.0, 1000.0, 0.0]], "float32")
    value = np.asarray(losses.soft_target_kl(teacher, student))
    assert np.isfinite(value).all() and value[0] == pytest.approx(2000.0, rel=1e-4)


def test_soft_target_kl_takes_per_example_temperatures(rng):
    teacher = rng.normal(size=(4, 5)).astype("float32")
    student = rng.normal(size=(4, 5)).astype("float32")
    temperatures = np.array([1.0, 2.0, 4.0, 8.0], "float32")
    np.testing.assert_allclose(
        losses.soft_target_kl(teacher, student, temperatures),
        reference.kl(teacher, student, temperatures),
        rtol=1e-5, atol=1e-6,
    )


def test_hard_label_cross_entropy_takes_ids_and_distributions(rng):
    logits = rng.normal(size=(8, 4)).astype("float32")
    labels = rng.integers(0, 4, size=8)
    expected = reference.cross_entropy(labels, logits)
    np.testing.assert_allclose(losses.hard_label_cross_entropy(labels, logits), expected, rtol=1e-5)
    one_hot = np.eye(4, dtype="float32")[labels]
    np.testing.assert_allclose(losses.hard_label_cross_entropy(one_hot, logits), expected, rtol=1e-5)


def test_distillation_loss_is_the_documented_blend(rng):
    teacher = rng.normal(size=(8, 5)).astype("float32")
    student = rng.normal(size=(8, 5)).astype("float32")
    labels = rng.integers(0, 5, size=8)
    alpha, temperature = 0.3, 3.0
    expected = alpha * reference.cross_entropy(labels, student) + (
        1 - alpha
    ) * temperature**2 * reference.kl(teacher, student, temperature)
    np.testing.assert_allclose(
        losses.distillation_loss(labels, teacher, student, alpha, temperature),
        expected, rtol=1e-5,
    )


def test_pure_distillation_needs_no_labels(rng):
    teacher = rng.normal(size=(3, 4)).astype("float32")
    student = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(
        losses.distillation_loss(None, teacher, student, alpha=0.0, temperature=2.0),
        4.0 * reference.kl(teacher, student, 2.0), rtol=1e-5,
    )


def test_hard_label_mask_drops_only_the_hard_term_of_unlabeled_examples(rng):
    teacher = rng.normal(size=(4, 3)).astype("float32")
    student = rng.normal(size=(4, 3)).astype("float32")
    labels = np.array([0, 2, -1, -1])  # the unlabeled carry a placeholder
    mask = np.array([1.0, 1.0, 0.0, 0.0], "float32")
    got = np.asarray(losses.distillation_loss(labels, teacher, student, 0.5, 2.0, mask))
    soft = 0.5 * 4.0 * reference.kl(teacher, student, 2.0)
    hard = 0.5 * reference.cross_entropy(np.array([0, 2]), student[:2])
    np.testing.assert_allclose(got[:2], hard + soft[:2], rtol=1e-5)
    np.testing.assert_allclose(got[2:], soft[2:], rtol=1e-5)
