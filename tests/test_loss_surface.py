"""The distillation loss on the plane through three sets of weights."""

import numpy as np
import pytest

import keras_kd
from keras_kd import loss_surface


def test_the_plane_passes_through_the_three_weight_vectors_and_restores_the_model():
    rng = np.random.default_rng(0)
    model = keras_kd.models.get("mlp", (6,), 3)
    inputs = rng.normal(size=(40, 6)).astype("float32")
    teacher = loss_surface.flat_weights(model)
    teacher_logits = model.predict(inputs, verbose=0)
    initial = teacher + rng.normal(scale=0.5, size=teacher.shape)
    final = teacher + rng.normal(scale=0.1, size=teacher.shape)
    saved = loss_surface.flat_weights(model)
    plane = loss_surface.loss_plane(model, initial, final, teacher, inputs, teacher_logits,
                                    temperature=2.0, resolution=4, batch_size=16)
    assert len(plane["x"]) == len(plane["y"]) == 4 and np.array(plane["loss"]).shape == (4, 4)
    assert plane["point_loss"]["teacher"] == pytest.approx(0.0, abs=1e-6)
    assert plane["point_loss"]["student_init"] > plane["point_loss"]["student_final"] > 0
    # The grid spans the three points, with a margin.
    for x, y in plane["points"].values():
        assert plane["x"][0] < x < plane["x"][-1] and plane["y"][0] <= y < plane["y"][-1]
    np.testing.assert_array_equal(loss_surface.flat_weights(model), saved)


def test_a_degenerate_plane_is_named():
    zero = np.zeros(3)
    with pytest.raises(ValueError, match="final weights equal its initial"):
        loss_surface.plane_coordinates(zero, zero, np.ones(3))
    with pytest.raises(ValueError, match="on the student's path"):
        loss_surface.plane_coordinates(zero, np.ones(3), 2 * np.ones(3))
