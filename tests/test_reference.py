"""The paper's reference student: distilled from an independent teacher, reused by key."""

import os

import pytest

from keras_kd import config as config_lib
from keras_kd.jobs import configs
from keras_kd.jobs import distill


@pytest.mark.slow
def test_reference_is_distilled_from_the_next_seeds_teacher_and_reused(tmp_path):
    config = config_lib.override(configs.DistillConfig(), {
        "dataset": "mnist1d:num_train=200,num_test=100", "teacher_arch": "mlp",
        "student_arch": "mlp", "members": 1, "teacher_epochs": 2, "epochs": 2,
        "reference": True, "control": False, "saved_models_dir": str(tmp_path)})
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
