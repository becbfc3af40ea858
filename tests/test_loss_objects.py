"""Distillation losses as objects: built-ins, a user's own, and how a Distiller takes them."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_kd
from keras_kd import losses

NUM_CLASSES = 4


@keras.saving.register_keras_serializable(package="tests")
class ProbabilityMSE(losses.DistillationLoss):
    """A user's loss: `scale * sum_c (softmax(s)_c - softmax(t)_c)^2` per example."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def compute_loss(self, teacher_logits, student_logits, labels=None):
        difference = ops.softmax(student_logits) - ops.softmax(teacher_logits)
        return self.scale * ops.sum(ops.square(difference), axis=-1)

    def get_config(self):
        return {"scale": self.scale}


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _probability_mse_and_gradient(teacher_logits, student_logits, scale):
    """NumPy: the mean loss over the batch and its gradient in the student's logits."""
    p_t, p_s = _softmax(teacher_logits), _softmax(student_logits)
    per_example = scale * ((p_s - p_t) ** 2).sum(-1)
    jacobians = np.einsum("bi,ij->bij", p_s, np.eye(p_s.shape[1])) - np.einsum(
        "bi,bj->bij", p_s, p_s)
    gradient = np.einsum("bij,bj->bi", jacobians, 2.0 * scale * (p_s - p_t)) / len(p_s)
    return per_example.mean(), gradient


def _linear(seed, name=None):
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.GlorotUniform(seed),
                           bias_initializer="zeros"),
    ], name=name)


def _split(rng, n):
    x = rng.normal(size=(n, 6)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=n).astype("int32")
    return x, y


def test_a_users_loss_trains_under_two_replicas_on_cached_teacher_logits_as_numpy_says(
        rng, mirrored):
    x, y = _split(rng, 32)
    cached_teacher = _linear(1)
    split = tf.data.Dataset.from_tensor_slices((x, y))
    # The teacher's logits are cached in the batches; the Distiller's own teacher is
    # another model, so a step that called it would not match the reference.
    batches = keras_kd.data.distillation_set(
        split, NUM_CLASSES, "identity", batch_size=32, teacher=cached_teacher,
        cache="memory").take(1)
    batch = next(iter(batches))
    assert "teacher_logits" in batch
    teacher_logits = cached_teacher.predict(x, verbose=0)
    lr, scale = 0.5, 3.0
    with mirrored.scope():
        student = _linear(2)
        distiller = keras_kd.Distiller(teacher=_linear(3), student=student,
                                       loss=ProbabilityMSE(scale))
        distiller.compile(optimizer=keras.optimizers.SGD(lr))
    kernel, bias = (w.copy() for w in student.get_weights())
    expected_loss, logit_gradient = _probability_mse_and_gradient(
        teacher_logits, x @ kernel + bias, scale)

    logs = distiller.fit(batches, epochs=1, verbose=0).history

    assert mirrored.num_replicas_in_sync == 2
    assert logs["loss"][0] == pytest.approx(expected_loss, rel=1e-5)
    assert logs["soft_loss"][0] == pytest.approx(expected_loss, rel=1e-5)
    assert logs["hard_loss"][0] == 0.0
    new_kernel, new_bias = student.get_weights()
    np.testing.assert_allclose(new_kernel, kernel - lr * x.T @ logit_gradient, atol=1e-6)
    np.testing.assert_allclose(new_bias, bias - lr * logit_gradient.sum(0), atol=1e-6)


def test_the_default_loss_by_name_or_object_trains_bit_identical_weights(rng):
    x, y = _split(rng, 48)
    trained = []
    for settings in ({"alpha": 0.3, "temperature": 2.5}, {"loss": "kl", "alpha": 0.3,
                     "temperature": 2.5}, {"loss": losses.KLDistillation(0.3, 2.5)}):
        student = _linear(2)
        distiller = keras_kd.Distiller(teacher=_linear(1), student=student, **settings)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        distiller.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        trained.append(student.get_weights())
    for weights in trained[1:]:
        for a, b in zip(trained[0], weights):
            np.testing.assert_array_equal(a, b)


def test_the_built_in_losses_match_numpy(rng):
    teacher, student = rng.normal(size=(2, 5, NUM_CLASSES)) * 2.0
    labels = rng.integers(0, NUM_CLASSES, size=5)
    mask = np.array([1.0, 0.0, 1.0, 1.0, 0.0], "float32")
    alpha, temperature = 0.25, 3.0
    ce = -_log_softmax(student)[np.arange(5), labels] * mask
    log_t, log_s = _log_softmax(teacher / temperature), _log_softmax(student / temperature)
    soft = {
        "kl": temperature**2 * (np.exp(log_t) * (log_t - log_s)).sum(-1),
        "reverse_kl": temperature**2 * (np.exp(log_s) * (log_s - log_t)).sum(-1),
        "logit_mse": ((teacher - student) ** 2).mean(-1),
    }
    for name, expected_soft in soft.items():
        loss = losses.get(name, alpha=alpha, temperature=temperature)
        hard, got_soft = loss.compute_terms(teacher, student, labels, hard_label_mask=mask)
        np.testing.assert_allclose(hard, alpha * ce, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_soft, (1 - alpha) * expected_soft, rtol=1e-5, atol=1e-6)
        total = loss.compute_loss(teacher, student, labels, hard_label_mask=mask)
        np.testing.assert_allclose(total, alpha * ce + (1 - alpha) * expected_soft, rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("loss", [ProbabilityMSE(2.0), losses.ReverseKLDistillation(0.2, 2.0)])
def test_the_loss_is_saved_and_reloaded_with_the_distiller(tmp_path, rng, loss):
    x, y = _split(rng, 16)
    distiller = keras_kd.Distiller(teacher=_linear(1), student=_linear(2), loss=loss)
    distiller.compile(optimizer="sgd")
    distiller.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.distillation_loss) is type(loss)
    assert loaded.distillation_loss.get_config() == loss.get_config()
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0, return_dict=True)["loss"],
                               distiller.evaluate(x, y, verbose=0, return_dict=True)["loss"],
                               rtol=1e-6)


def test_a_registered_loss_is_a_setting_of_the_jobs():
    class Halved(losses.KLDistillation):
        def soft_term(self, teacher_logits, student_logits, temperature):
            return 0.5 * super().soft_term(teacher_logits, student_logits, temperature)

    losses.register_loss("halved_kl_for_test", Halved)
    try:
        config = keras_kd.config.build(keras_kd.jobs.DistillConfig, {
            "loss": "halved_kl_for_test", "temperature": 2.0})
        assert config.distillation.loss_object().get_config() == {"alpha": 0.0,
                                                                 "temperature": 2.0}
        assert isinstance(config.distillation.loss_object(), Halved)
        assert "_halved_kl_for_test_" in config.run_name()
    finally:
        del losses.LOSSES["halved_kl_for_test"]


class _BatchMean(losses.DistillationLoss):
    def compute_loss(self, teacher_logits, student_logits, labels=None):
        return ops.mean(losses.soft_target_kl(teacher_logits, student_logits))


@pytest.mark.parametrize("make, message", [
    (lambda: {"loss": losses.KLDistillation(), "alpha": 0.5},
     "a loss object carries its own settings"),
    (lambda: {"loss": "hinge"}, r"Unknown distillation loss 'hinge'; expected one of \['kl'"),
    (lambda: {"loss": keras.losses.KLDivergence()}, "loss must be a keras_kd.losses"),
    (lambda: {"loss": "kl", "temperature": 0.0}, "temperature must be > 0"),
])
def test_a_bad_loss_is_refused_when_the_distiller_is_built(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        keras_kd.Distiller(teacher=_linear(1), student=_linear(2), **make())


def test_a_loss_that_reduces_the_batch_itself_is_refused_naming_the_shape(rng):
    x, y = _split(rng, 8)
    distiller = keras_kd.Distiller(teacher=_linear(1), student=_linear(2), loss=_BatchMean())
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"_BatchMean returned a loss of shape \(\).*\[batch\]"):
        distiller.fit(x, y, verbose=0)


def test_a_loss_that_cannot_take_the_batches_hard_label_mask_is_refused(rng):
    x, y = _split(rng, 8)
    batches = tf.data.Dataset.from_tensor_slices(
        {"x": x, "y": y, "hard_label_mask": np.ones(8, "float32")}).batch(4)
    distiller = keras_kd.Distiller(teacher=_linear(1), student=_linear(2),
                                   loss=ProbabilityMSE())
    distiller.compile(optimizer="sgd")
    with pytest.raises(TypeError, match="carry hard_label_mask .* ProbabilityMSE.compute_loss"):
        distiller.fit(batches, verbose=0)


def test_a_distill_config_names_an_unknown_loss_before_any_training():
    with pytest.raises(ValueError, match="Unknown distillation loss 'mse'"):
        keras_kd.config.build(keras_kd.jobs.DistillConfig, {"loss": "mse"})
    with pytest.raises(ValueError, match="loss_plane=5 draws the study's T\\^2 \\* KL"):
        keras_kd.config.build(keras_kd.jobs.DistillConfig, {
            "loss": "logit_mse", "loss_plane": 5, "members": 1, "teacher_arch": "resnet8"})
