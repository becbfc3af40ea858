"""The control: an independently trained student, reported beside the distilled one."""

import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd import jobs
from keras_kd.jobs import control as control_lib
from keras_kd.jobs import report as report_lib
from tests import reference

DATASET = "mnist1d:num_train=200,num_test=100"


def _config(tmp_path, **overrides):
    settings = {"dataset": DATASET, "data_dir": str(tmp_path / "data"),
                "saved_models_dir": str(tmp_path / "saved"), "student_arch": "mnist1d_mlp",
                "teacher_arch": "mnist1d_cnn", "epochs": 1, "batch_size": 100, **overrides}
    return keras_kd.config.build(jobs.DistillConfig, settings)


def test_the_control_is_the_students_budget_from_its_own_seed(tmp_path):
    config = _config(tmp_path, epochs=3, lr=0.01)
    spec, student = config.control_spec(), config.student_spec()
    assert (spec.arch, spec.epochs, spec.lr, spec.batch_size) == ("mnist1d_mlp", 3, 0.01, 100)
    assert spec.seed != student.seed
    assert spec.seed != _config(tmp_path, seed=1).control_spec().seed


@pytest.mark.slow
def test_the_control_is_trained_once_and_reused_by_key(tmp_path):
    config = _config(tmp_path)
    data = keras_kd.data.load(DATASET, data_dir=str(tmp_path / "data"))
    strategy = keras_kd.distribute.get_strategy("default")
    model, record = control_lib.independent_student(config, data, strategy, verbose=0)
    assert not record["reused"] and record["seed"] == config.control_spec().seed
    assert record["path"].startswith(str(tmp_path / "saved" / data.info.slug / "controls"))
    assert model.output_shape == (None, 10)
    # Another temperature, alpha or policy distills another student: the control is the same.
    other = _config(tmp_path, temperature=2.0, alpha=0.5, policy="shift")
    again, reused = control_lib.independent_student(other, data, strategy, verbose=0)
    assert reused["reused"] and reused["path"] == record["path"]
    x = np.zeros((2, 40, 1), "float32")
    np.testing.assert_allclose(again(x), model(x), atol=1e-6)
    # Another budget or seed is another control.
    for changed in (_config(tmp_path, epochs=2), _config(tmp_path, seed=3)):
        _, fresh = control_lib.independent_student(changed, data, strategy, verbose=0)
        assert not fresh["reused"] and fresh["path"] != record["path"]


@pytest.mark.slow  # trains three small models: the fast tier's heaviest test
def test_fidelity_report_measures_the_control_and_nll(rng):
    x = rng.normal(size=(40, 40, 1)).astype("float32")
    y = rng.integers(0, 10, size=40).astype("int32")
    teacher = keras_kd.models.get("mnist1d_cnn", (40, 1), 10)
    student = keras_kd.models.get("mnist1d_mlp", (40, 1), 10)
    control = keras_kd.models.get("mlp", (40, 1), 10, hidden_units=(16,))
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    report = keras_kd.evaluation.fidelity_report(
        teacher, student, {"test": batches}, control=control)["test"]
    t, s, c = (np.asarray(model(x)) for model in (teacher, student, control))
    assert report["control_agreement"] == pytest.approx(np.mean(t.argmax(1) == c.argmax(1)))
    assert report["control_predictive_kl"] == pytest.approx(reference.kl(t, c).mean(), rel=1e-4)
    assert report["control_accuracy"] == pytest.approx(np.mean(c.argmax(1) == y))
    for role, logits in (("teacher", t), ("student", s), ("control", c)):
        assert report[f"{role}_nll"] == pytest.approx(reference.nll(y, logits), rel=1e-4)
    # The student as its own control: the two columns agree.
    same = keras_kd.evaluation.fidelity_report(
        teacher, student, {"test": batches}, control=student)["test"]
    assert same["control_agreement"] == pytest.approx(same["agreement"])
    assert same["control_nll"] == pytest.approx(same["student_nll"], rel=1e-6)
    without = keras_kd.evaluation.fidelity_report(teacher, student, {"test": batches})["test"]
    assert not [name for name in without if name.startswith("control")]


def test_report_markdown_sets_the_student_beside_the_control():
    row = {"agreement": 0.9, "control_agreement": 0.8, "predictive_kl": 0.1,
           "control_predictive_kl": 0.3, "student_accuracy": 0.85, "control_accuracy": 0.84,
           "student_nll": 0.5, "control_nll": 0.6, "teacher_accuracy": 0.9}
    report = {
        "config": {"dataset": DATASET, "student_arch": "mnist1d_cnn", "members": 3,
                   "teacher_arch": "mnist1d_cnn", "alpha": 0.0, "temperature": 4.0,
                   "epochs": 10, "seed": 0, "policy": "identity", "ece_bins": 10},
        "dataset": {"num_train": 200, "num_test": 100, "input_shape": [40, 1],
                    "settings": {"num_train": 200}},
        "splits": {"test": row},
        "control": {"seed": 7, "reused": True, "path": "c.keras"},
        "artifacts": {"saved_model": "s", "keras": "s.keras"},
    }
    text = report_lib.report_markdown(report)
    assert "| test | 0.9000 | 0.8000 | 0.1000 | 0.3000 |" in text
    assert "10 equal-width confidence bins" in text and "num_train=200" in text
    assert "control_agreement" not in text.split("## Distilled student and its references")[0]
    report["control"] = None
    assert "## Distilled student and its references" not in report_lib.report_markdown(report)


@pytest.mark.parametrize("distill_data, distilled", [
    ("teacher", slice(0, 100)), ("fresh", slice(100, 200)), ("all", slice(0, 200))])
def test_the_control_learns_only_the_teachers_labels(tmp_path, distill_data, distilled):
    from keras_kd.jobs import distill

    config = _config(tmp_path, teacher_data_fraction=0.5, distill_data=distill_data, epochs=6)
    data = keras_kd.data.load(DATASET, data_dir=str(tmp_path / "data"))
    run = distill._Run(config, data, job=None, verbose=0)
    inputs = np.stack([x for x, _ in data.train.as_numpy_iterator()])
    labeled = np.stack([x for x, _ in run.labeled_data.train.as_numpy_iterator()])
    np.testing.assert_array_equal(labeled, inputs[:100])  # D0: the teachers' examples
    student = np.stack([x for x, _ in run.distill_data.train.as_numpy_iterator()])
    np.testing.assert_array_equal(student, inputs[distilled])
    # As many examples as the student's epochs take, so D1's labels buy no extra steps.
    epochs = control_lib.matching_epochs(6, len(student), len(labeled))
    assert epochs * len(labeled) == 6 * len(student)
