"""Coupled L2 weight decay (PyTorch's SGD/Adam `weight_decay`) against a NumPy reference."""

import keras
import numpy as np
import pytest

from keras_kd import config as config_lib
from keras_kd import optimizers
from keras_kd.jobs import configs


def _pytorch_nesterov_sgd(weights, gradients, lr, momentum, l2):
    """PyTorch's SGD(nesterov=True, weight_decay=l2), step by step."""
    weights, buffer = weights.copy(), None
    for gradient in gradients:
        step = gradient + l2 * weights
        buffer = step if buffer is None else momentum * buffer + step
        weights -= lr * (step + momentum * buffer)
    return weights


def test_coupled_sgd_matches_pytorch_sgd_with_weight_decay():
    rng = np.random.default_rng(0)
    start = rng.normal(size=5).astype("float32")
    gradients = rng.normal(size=(4, 5)).astype("float32")
    variable = keras.Variable(start)
    optimizer = optimizers.make_optimizer("sgd", 0.1, None, 0.01, "coupled")
    for gradient in gradients:
        optimizer.apply([gradient], [variable])
    # Keras' Nesterov form equals PyTorch's at a constant learning rate.
    expected = _pytorch_nesterov_sgd(start, gradients, 0.1, 0.9, 0.01)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_coupled_decay_is_stronger_than_decoupled_at_momentum():
    shrunk = {}
    for kind in optimizers.WEIGHT_DECAY_TYPES:
        variable = keras.Variable(np.ones(3, "float32"))
        optimizer = optimizers.make_optimizer("sgd", 0.1, None, 1e-2, kind)
        for _ in range(50):
            optimizer.apply([np.zeros(3, "float32")], [variable])
        shrunk[kind] = 1.0 - float(variable.numpy()[0])
    assert shrunk["coupled"] > 5 * shrunk["decoupled"] > 0


def test_coupled_optimizer_round_trips_its_config():
    optimizer = optimizers.make_optimizer("adam", 1e-3, None, 1e-4, "coupled")
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(again).__name__ == "AdamWithL2" and again.l2 == pytest.approx(1e-4)


def test_weight_decay_settings_are_checked():
    with pytest.raises(ValueError, match="adamw"):
        config_lib.override(configs.DistillConfig(),
                            {"optimizer": "adamw", "weight_decay_type": "coupled"})
    with pytest.raises(ValueError, match="weight_decay_type"):
        optimizers.make_optimizer("sgd", 0.1, weight_decay=1e-4, weight_decay_type="l1")
    with pytest.raises(ValueError, match="fresh"):
        config_lib.override(configs.DistillConfig(), {"distill_data": "fresh"})


def test_per_role_recipes_and_the_reference_config():
    config = config_lib.override(configs.DistillConfig(), {
        "teacher_batch_size": 256, "teacher_lr": 0.1, "batch_size": 128, "lr": 0.05,
        "weight_decay": 1e-4, "weight_decay_type": "coupled", "optimizer": "sgd",
        "reference": True, "seed": 4})
    assert (config.teacher_spec().batch_size, config.teacher_spec().lr) == (256, 0.1)
    assert (config.student_spec().batch_size, config.student_spec().lr) == (128, 0.05)
    assert config.control_spec(epochs=7).batch_size == 128
    assert config.teacher_spec().weight_decay_type == "coupled"
    reference = config.reference_config()
    assert reference.training.seed == 5
    assert not reference.reference.enabled and not reference.control.enabled
    assert reference.teacher == config.teacher and reference.student == config.student
    assert reference.student_only_config(seed=4) == config.student_only_config()


def test_teachers_may_keep_their_weight_decay_while_the_student_drops_it():
    config = config_lib.override(configs.DistillConfig(), {
        "weight_decay": 0.0, "teacher_weight_decay": 1e-4})
    assert config.teacher_spec().weight_decay == 1e-4
    assert config.student_spec().weight_decay == config.control_spec().weight_decay == 0.0
    assert config_lib.override(configs.DistillConfig(), {
        "weight_decay": 1e-3}).teacher_spec().weight_decay == 1e-3
    with pytest.raises(ValueError, match="teacher_weight_decay"):
        config_lib.override(configs.DistillConfig(), {"teacher_weight_decay": -1.0})
