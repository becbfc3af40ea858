import json
import os

import keras
import pytest

import keras_kd
from keras_kd import training
from keras_kd.jobs.teachers import ensemble_members


def _spec(**overrides):
    return training.ClassifierSpec(**{"arch": "mlp", "epochs": 1, "batch_size": 128, **overrides})


def test_members_are_reused_and_extended(tmp_path, digits):
    first = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    assert [m["reused"] for m in first] == [False]
    stamp = os.path.getmtime(first[0]["path"])
    second = ensemble_members(_spec(), digits, 2, str(tmp_path), verbose=0)
    assert [m["reused"] for m in second] == [True, False]
    assert os.path.getmtime(first[0]["path"]) == stamp
    with open(second[1]["path"].replace(".keras", ".json")) as f:
        record = json.load(f)
    assert record["settings"]["arch"] == "mlp" and 0.0 <= record["test_accuracy"] <= 1.0
    members = [keras.saving.load_model(m["path"]) for m in second]
    assert members[0].get_weights()[0].tolist() != members[1].get_weights()[0].tolist()


@pytest.mark.slow
def test_changed_settings_never_reuse_members(tmp_path, digits):
    a = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    b = ensemble_members(_spec(lr=1e-2), digits, 1, str(tmp_path), verbose=0)
    assert a[0]["path"] != b[0]["path"] and not b[0]["reused"]


def test_a_member_without_its_record_is_retrained(tmp_path, digits):
    (member,) = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    os.remove(member["path"].replace(".keras", ".json"))  # as if killed before the record
    (again,) = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    assert not again["reused"]


@pytest.mark.slow
def test_a_damaged_member_is_named_and_retrained(tmp_path, digits, caplog):
    (member,) = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    with open(member["path"], "r+b") as f:
        f.truncate(100)  # what used to fail every rerun with "File not found"
    (again,) = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    assert not again["reused"] and "damaged" in again["rebuilt"]
    assert member["path"] in caplog.text and "retraining it" in caplog.text
    keras.saving.load_model(again["path"])  # whole again
    (third,) = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    assert third["reused"] and "rebuilt" not in third


def test_members_are_keyed_by_the_data_not_its_name(tmp_path, digits):
    import numpy as np

    def npz(path, shift):
        x, y = (np.concatenate([t.numpy() for t in part]) for part in
                zip(*digits.train.batch(2000)))
        xt, yt = (np.concatenate([t.numpy() for t in part]) for part in
                  zip(*digits.test.batch(2000)))
        np.savez(path, x_train=x + shift, y_train=y, x_test=xt, y_test=yt)
        return keras_kd.data.load(f"npz:{path}")

    first = ensemble_members(_spec(), npz(tmp_path / "d.npz", 0.0), 1, str(tmp_path), verbose=0)
    rewritten = npz(tmp_path / "d.npz", 0.25)  # the same name, other content
    second = ensemble_members(_spec(), rewritten, 1, str(tmp_path), verbose=0)
    assert not second[0]["reused"] and second[0]["path"] != first[0]["path"]


def test_training_is_reproducible_per_seed(digits):
    a = training.train_classifier(_spec(), digits, seed=7, verbose=0).get_weights()
    b = training.train_classifier(_spec(), digits, seed=7, verbose=0).get_weights()
    for x, y in zip(a, b):
        assert (x == y).all()


def test_training_batches_are_augmented_reproducibly_and_resume_mid_stream(digits):
    import numpy as np

    batches = keras_kd.data.batched(digits.train, 256, shuffle=True, seed=3, epochs=2)
    policy = training.training_augmentation("crop_flip", "digits")
    shape = digits.info.input_shape

    def arrays(dataset):
        return [(x.numpy(), y.numpy()) for x, y in dataset]

    plain = arrays(batches)
    once = arrays(training.augmented(batches, policy, shape, seed=3))
    again = arrays(training.augmented(batches, policy, shape, seed=3))
    resumed = arrays(training.augmented(batches.skip(6), policy, shape, seed=3, first_step=6))
    assert len(once) == len(plain) == 12
    assert all((a[1] == b[1]).all() for a, b in zip(once, plain))  # labels kept
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(once, plain))  # images moved
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(once, again))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(once[6:], resumed))


def test_training_augmentation_makes_other_members(tmp_path, digits):
    plain = ensemble_members(_spec(), digits, 1, str(tmp_path), verbose=0)
    cropped = ensemble_members(_spec(augment="crop_flip"), digits, 1, str(tmp_path), verbose=0)
    assert not cropped[0]["reused"] and cropped[0]["path"] != plain[0]["path"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"arch": "vgg"}, "Unknown model 'vgg'"),
        ({"epochs": 0}, "epochs must be >= 1; got 0"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of .*; got 'rmsprop'"),
        ({"lr": 0.0}, "lr must be > 0; got 0.0"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0; got -1.0"),
        ({"augment": "crop_flip+cutmix"}, "'crop_flip\\+cutmix' must keep hard labels"),
    ],
)
def test_bad_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        _spec(**overrides)


def test_make_optimizer_decays_along_a_cosine():
    optimizer = keras_kd.optimizers.make_optimizer("sgd", 0.1, decay_steps=10)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(0.1) and float(schedule(10)) == pytest.approx(0.0, abs=1e-7)
    assert float(schedule(5)) == pytest.approx(0.05, rel=1e-5)


def test_a_bad_config_cannot_be_built():
    with pytest.raises(ValueError, match="temperature must be > 0; got -1.0"):
        keras_kd.jobs.Distillation(temperature=-1.0)
    with pytest.raises(ValueError, match="members must be >= 1; got 0"):
        keras_kd.config.build(keras_kd.jobs.DistillConfig, {"members": 0})
    with pytest.raises(ValueError, match="ece_bins must be >= 1; got 0"):
        keras_kd.config.build(keras_kd.jobs.DistillConfig, {"ece_bins": 0})
