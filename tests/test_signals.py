"""Signals as first-class inputs: MNIST-1D, the 1-D stages and the 1-D models."""

import random

import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.data import augment
from keras_kd.data import mnist1d

SEED = tf.constant([7, 11], tf.int64)
SMALL = "mnist1d:num_train=300,num_test=100"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return keras_kd.data.load(SMALL, data_dir=str(tmp_path_factory.mktemp("data")))


def _arrays(splits):
    (x, y), = splits.train.batch(10_000).take(1)
    (x_test, y_test), = splits.test.batch(10_000).take(1)
    return x.numpy(), y.numpy(), x_test.numpy(), y_test.numpy()


@pytest.mark.slow
def test_mnist1d_default_is_the_packages_standard_split(tmp_path):
    from mnist1d import data as reference

    splits = keras_kd.data.load("mnist1d", data_dir=str(tmp_path))
    info = splits.info
    assert (info.name, info.num_classes, info.input_shape, info.num_train, info.num_test) == (
        "mnist1d", 10, (40, 1), 4000, 1000)
    assert info.kind == "signals" and info.settings["iid_noise_scale"] == 0.02
    expected = reference.make_dataset(reference.get_dataset_args())
    x, y, x_test, y_test = _arrays(splits)
    np.testing.assert_allclose(x[..., 0], expected["x"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y, expected["y"])
    np.testing.assert_allclose(x_test[..., 0], expected["x_test"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y_test, expected["y_test"])


def test_mnist1d_is_deterministic_cached_and_leaves_global_randomness_alone(
        tmp_path, small, monkeypatch):
    np.random.seed(5)
    random.seed(5)
    expected_numpy, expected_python = np.random.rand(), random.random()
    np.random.seed(5)
    random.seed(5)
    first = keras_kd.data.load(SMALL, data_dir=str(tmp_path / "a"))
    assert (np.random.rand(), random.random()) == (expected_numpy, expected_python)
    assert first.digest == small.digest  # generated again elsewhere: the same data
    for a, b in zip(_arrays(first), _arrays(small)):
        np.testing.assert_array_equal(a, b)
    # The second load reads the cached file; it does not generate.
    monkeypatch.setattr(mnist1d, "_make", lambda settings: pytest.fail("regenerated"))
    assert keras_kd.data.load(SMALL, data_dir=str(tmp_path / "a")).digest == small.digest


def test_mnist1d_damaged_cache_is_regenerated(tmp_path, small):
    keras_kd.data.load(SMALL, data_dir=str(tmp_path))
    (path,) = (tmp_path / "mnist1d").iterdir()
    path.write_bytes(path.read_bytes()[:100])
    assert keras_kd.data.load(SMALL, data_dir=str(tmp_path)).digest == small.digest


def test_mnist1d_settings_name_the_data_and_change_it(tmp_path, small):
    same = keras_kd.data.load("mnist1d:seed=42,num_test=100,num_train=300",
                              data_dir=str(tmp_path))
    assert same.info.name == SMALL and same.digest == small.digest
    assert small.info.slug == "mnist1d_num_train_300_num_test_100"
    for change in ("seed=1", "iid_noise_scale=0.1", "max_translation=10"):
        other = keras_kd.data.load(f"{SMALL},{change}", data_dir=str(tmp_path))
        assert other.digest != small.digest, change
        assert change in other.info.name
    assert keras_kd.data.load(f"{SMALL},final_seq_length=60",
                              data_dir=str(tmp_path)).info.input_shape == (60, 1)


@pytest.mark.parametrize(
    "name, message",
    [
        ("mnist1d:noise=1", "'noise=1' is not a setting"),
        ("mnist1d:num_train=abc", "num_train='abc' is not an int"),
        ("mnist1d:num_train=1005", "must be a multiple of 10"),
        ("mnist1d:iid_noise_scale=-1", "iid_noise_scale must be >= 0"),
        ("mnist1d:max_translation=100", "max_translation must be at most 72"),
        ("mnist1d:shuffle_seq=maybe", "shuffle_seq='maybe' is not a bool"),
    ],
)
def test_bad_mnist1d_settings_are_named(name, message):
    with pytest.raises(keras_kd.data.DatasetError, match=message):
        keras_kd.data.check_name(name)
    with pytest.raises(ValueError, match=message):
        keras_kd.jobs.DistillConfig(data=keras_kd.jobs.Data(dataset=name))


def test_npz_signals_and_feature_vectors(tmp_path):
    rng = np.random.default_rng(0)

    def load(kind=None, shape=(12, 20)):
        arrays = {"x_train": rng.normal(size=shape).astype("float32"), "y_train": np.arange(12) % 3,
                  "x_test": rng.normal(size=(6, *shape[1:])).astype("float32"),
                  "y_test": np.arange(6) % 3}
        if kind:
            arrays["kind"] = np.array(kind)
        np.savez(tmp_path / "data.npz", **arrays)
        return keras_kd.data.load(f"npz:{tmp_path / 'data.npz'}").info

    assert (load("signals").input_shape, load("signals").kind) == ((20, 1), "signals")
    assert load("signals", (12, 20, 2)).input_shape == (20, 2)
    assert (load().input_shape, load().kind) == ((20,), "features")
    assert (load(shape=(12,)).input_shape, load(shape=(12,)).kind) == ((1,), "features")
    with pytest.raises(keras_kd.data.DatasetError, match=r"rank 2 \(\[examples, length\]\) "
                       r"or 3 .* for kind='signals'; got shape \(12,\)"):
        load("signals", (12,))
    with pytest.raises(keras_kd.data.DatasetError, match="kind must be one of"):
        load("audio")


def _signal_batch(rng, batch_size=16, length=40, constant=False):
    if constant:
        x = np.repeat(np.arange(1, batch_size + 1, dtype="float32")[:, None], length, axis=1)
    else:
        x = rng.normal(size=(batch_size, length)).astype("float32")
    labels = rng.integers(0, 10, batch_size)
    return {"x": tf.constant(x[..., None]), "y": tf.one_hot(labels, 10)}


def test_shift_moves_each_signal_within_its_padding(rng):
    batch = _signal_batch(rng)
    shifted = augment.RandomCrop(5)(batch, SEED)["x"].numpy()[..., 0]
    padded = np.pad(batch["x"].numpy()[..., 0], [(0, 0), (5, 5)])
    offsets = [next(k for k in range(11) if np.array_equal(padded[i, k:k + 40], row))
               for i, row in enumerate(shifted)]
    assert len(set(offsets)) > 4  # per signal, not one shift for the batch
    np.testing.assert_array_equal(shifted, augment.RandomCrop(5)(batch, SEED)["x"].numpy()[..., 0])


def test_noise_adds_gaussian_noise_of_its_stddev(rng):
    batch = _signal_batch(rng, batch_size=256)
    noisy = augment.GaussianNoise(0.3)(batch, SEED)
    difference = (noisy["x"] - batch["x"]).numpy()
    assert abs(difference.std() - 0.3) < 0.01 and abs(difference.mean()) < 0.01
    np.testing.assert_array_equal(noisy["y"], batch["y"])


def _one_class_each(batch):
    """The batch relabelled with a class per example, so mixed labels name the sources."""
    return {"x": batch["x"], "y": tf.one_hot(np.arange(16), 16)}


def test_mixup_mixes_signals_as_their_labels(rng):
    batch = _one_class_each(_signal_batch(rng))
    mixed = augment.MixUp(alpha=1.0)(batch, SEED)
    weights = mixed["y"].numpy()
    np.testing.assert_allclose(
        mixed["x"].numpy(), np.einsum("ij,jlc->ilc", weights, batch["x"].numpy()), atol=1e-5)
    assert (weights.max(axis=1) < 1).sum() >= 8


def test_cutmix_pastes_one_segment_weighted_by_its_length(rng):
    batch = _one_class_each(_signal_batch(rng, constant=True))
    mixed = augment.CutMix(alpha=1.0)(batch, SEED)
    sources = batch["x"].numpy()[:, 0, 0]
    changed = 0
    for signal, weights, own in zip(mixed["x"].numpy()[..., 0], mixed["y"].numpy(), sources):
        pasted = signal != own
        if pasted.any():
            changed += 1
            where = np.flatnonzero(pasted)
            assert where[-1] - where[0] + 1 == len(where)  # one contiguous segment
            assert len(set(signal[pasted].tolist())) == 1
            partner = int(signal[pasted][0]) - 1
            np.testing.assert_allclose(weights[partner], pasted.mean(), atol=1e-6)
    assert changed >= 8


def test_signal_policy_builds_distillation_batches(small):
    policy = keras_kd.data.Policy.parse("shift+cutmix+noise")
    batches = keras_kd.data.distillation_set(
        small.train, 10, policy, batch_size=32, seed=0, epochs=1)
    first = next(iter(batches))
    x = first[0] if isinstance(first, tuple) else first["x"]
    assert tuple(x.shape) == (32, 40, 1)
    with pytest.raises(ValueError, match=r"stage 'crop_flip' applies to images; the inputs "
                                         r"are signals of shape \(40, 1\)"):
        keras_kd.data.distillation_set(small.train, 10, keras_kd.data.Policy.parse("crop_flip"),
                                       batch_size=32, seed=0, epochs=1)


@pytest.mark.parametrize("arch", ["resnet8", "cnn", "mnist1d_cnn", "mnist1d_mlp", "mlp"])
def test_models_for_signals_return_logits_and_features(arch):
    model = keras_kd.models.get(arch, (40, 1), 10)
    assert model.output_shape == (None, 10)
    assert keras_kd.models.softmax_output_layer(model) is None
    features = keras_kd.models.penultimate(model)
    assert len(features.output_shape) == 2
    logits = model(np.zeros((3, 40, 1), "float32"))
    assert tuple(logits.shape) == (3, 10)
    if arch.startswith("resnet") or arch == "cnn":
        assert any(type(layer).__name__ == "Conv1D" for layer in model.layers)


def test_mnist1d_paper_models_have_the_papers_sizes():
    # ConvBase: conv 1->25 (k5), 25->25 (k3) twice, linear 125->10; MLP 40-100-100-10.
    assert keras_kd.models.get("mnist1d_cnn", (40, 1), 10).count_params() == 5210
    assert keras_kd.models.get("mnist1d_mlp", (40, 1), 10).count_params() == (
        40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10)
    with pytest.raises(ValueError, match=r"mnist1d_cnn needs signals .*\(8, 8, 1\)"):
        keras_kd.models.get("mnist1d_cnn", (8, 8, 1), 10)
    with pytest.raises(ValueError, match=r"resnet8 needs images .* or signals .*\(64,\)"):
        keras_kd.models.get("resnet8", (64,), 10)
