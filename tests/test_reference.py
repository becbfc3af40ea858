"""The paper's reference student: distilled from an independent teacher, reused by key."""

import os

import keras
import numpy as np
import pytest

from keras_kd import config as config_lib
from keras_kd.jobs import configs
from keras_kd.jobs import distill


def _tiny_config(tmp_path):
    """Self-distillation of an MLP for two epochs, with the paper's reference."""
    return config_lib.override(configs.DistillConfig(), {
        "dataset": "mnist1d:num_train=200,num_test=100", "teacher_arch": "mlp",
        "student_arch": "mlp", "members": 1, "teacher_epochs": 2, "epochs": 2,
        "reference": True, "control": False, "saved_models_dir": str(tmp_path)})


@pytest.mark.slow
def test_reference_is_distilled_from_the_next_seeds_teacher_and_reused(tmp_path):
    config = _tiny_config(tmp_path)
    report = distill.run(config, verbose=0)
    reference = report["reference"]
    assert reference["seed"] == 1 and not reference["reused"]
    test = report["splits"]["test"]
    assert 0.0 <= test["reference_agreement"] <= 1.0
    assert test["reference_accuracy"] == pytest.approx(reference["test_accuracy"])
    # The reference's own teacher is another ensemble than this run's.
    teachers = os.listdir(os.path.join(tmp_path, "mnist1d_num_train_200_num_test_100",
                                       "teachers"))
    assert len(teachers) == 2
    again = distill.run(config_lib.override(config, {"temperature": 2.0}), verbose=0)
    assert again["reference"]["reused"] is False  # another temperature: another procedure
    third = distill.run(config_lib.override(config, {"output_dir": str(tmp_path / "x")}),
                        verbose=0)
    assert third["reference"]["reused"] is True
    assert third["splits"]["test"]["reference_agreement"] == test["reference_agreement"]


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


@pytest.mark.slow
def test_a_runs_student_is_the_previous_seeds_reference(tmp_path):
    config = _tiny_config(tmp_path)
    # Seed 5 publishes its student; seed 4's reference is that student, not a new one.
    later = distill.run(config_lib.override(config, {"seed": 5}), verbose=0)
    earlier = distill.run(config_lib.override(config, {"seed": 4}), verbose=0)
    assert earlier["reference"]["reused"] is True and earlier["reference"]["seed"] == 5
    for published, trained in zip(_weights(earlier["reference"]["path"]),
                                  _weights(later["artifacts"]["keras"])):
        np.testing.assert_array_equal(published, trained)
    assert earlier["splits"]["test"]["reference_accuracy"] == pytest.approx(
        later["splits"]["test"]["student_accuracy"])
    # What the student-only config leaves out does not change the student: a run
    # with its own control, reference and fidelity curve trains the one its
    # previous seed distilled as a reference.
    first = distill.run(config_lib.override(config, {"seed": 0}), verbose=0)
    second = distill.run(config_lib.override(
        config, {"seed": 1, "control": True, "fidelity_curve": "every:1"}), verbose=0)
    assert first["reference"]["reused"] is False
    for distilled, trained in zip(_weights(first["reference"]["path"]),
                                  _weights(second["artifacts"]["keras"])):
        np.testing.assert_allclose(distilled, trained, rtol=1e-6, atol=1e-7)
