import keras
import numpy as np
import pytest

import keras_kd
from tests import reference


def _members(n=3, classes=4):
    members = []
    for seed in range(n):
        keras.utils.set_random_seed(seed)
        members.append(keras_kd.models.get("mlp", (6,), classes, hidden_units=(8,)))
    return members


def test_output_is_log_of_mean_member_probabilities(rng):
    members = _members()
    x = rng.normal(size=(10, 6)).astype("float32") * 4
    probabilities = [np.exp(reference.log_softmax(m.predict(x, verbose=0))) for m in members]
    expected = np.log(np.mean(probabilities, axis=0))
    got = keras_kd.Ensemble(members).predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-5)


def test_ensemble_is_stable_for_confident_members():
    logits = np.array([[[500.0, -500.0]], [[-500.0, 500.0]]], "float32")
    np.testing.assert_allclose(keras_kd.ensemble.ensemble_logits(logits), np.log([[0.5, 0.5]]), atol=1e-6)


def test_members_load_from_keras_files_and_saved_models(tmp_path, rng):
    members = _members(2)
    keras_path = str(tmp_path / "m0.keras")
    members[0].save(keras_path)
    saved_model = str(tmp_path / "m1")
    members[1].export(saved_model, verbose=False)
    x = rng.normal(size=(5, 6)).astype("float32")
    from_paths = keras_kd.Ensemble([keras_path, saved_model])
    np.testing.assert_allclose(
        from_paths.predict(x, verbose=0), keras_kd.Ensemble(members).predict(x, verbose=0), atol=1e-6
    )


def test_ensemble_round_trips_through_a_keras_file(tmp_path, rng):
    ensemble = keras_kd.Ensemble(_members(2))
    x = rng.normal(size=(3, 6)).astype("float32")
    ensemble.save(str(tmp_path / "e.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "e.keras"))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ensemble.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("members", [[], "model.keras"])
def test_bad_member_lists_are_refused(members):
    with pytest.raises(ValueError, match="non-empty list of members"):
        keras_kd.Ensemble(members)


def test_unloadable_member_path_is_named(tmp_path):
    with pytest.raises(ValueError, match="expected a '.keras' file or a TensorFlow SavedModel"):
        keras_kd.Ensemble([str(tmp_path)])


def test_members_must_agree_on_the_class_count():
    members = _members(1, classes=4) + _members(1, classes=5)
    with pytest.raises(ValueError, match=r"class counts are \[4, 5\]"):
        keras_kd.Ensemble(members)
