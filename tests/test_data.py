import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_kd


def test_digits_is_a_fixed_stratified_split(digits):
    info = digits.info
    assert (info.num_classes, info.input_shape, info.num_train, info.num_test) == (10, (8, 8, 1), 1347, 450)
    x, y = next(iter(digits.test.batch(450)))
    assert x.dtype == tf.float32 and y.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    from sklearn.datasets import load_digits

    expected = np.bincount(load_digits().target) * 450 / 1797  # stratified: each class's share
    assert np.abs(np.bincount(y.numpy(), minlength=10) - expected).max() <= 1
    again = keras_kd.data.load("digits")
    np.testing.assert_array_equal(next(iter(again.test.batch(450)))[1], y)


def test_batched_is_reproducible_per_seed(digits):
    def labels(seed):
        return np.concatenate([y.numpy() for _, y in keras_kd.data.batched(digits.train, 100, shuffle=True, seed=seed)])
    assert np.array_equal(labels(3), labels(3))
    assert not np.array_equal(labels(3), labels(4))
    epochs = keras_kd.data.batched(digits.train, 1347, shuffle=True, seed=3).repeat(2)
    first, second = (y.numpy() for _, y in epochs)
    assert not np.array_equal(first, second)  # reshuffled each epoch


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, size=(12, 6, 6), dtype=np.uint8),
        "y_train": np.arange(12) % 3,
        "x_test": rng.integers(0, 256, size=(6, 6, 6), dtype=np.uint8),
        "y_test": np.arange(6) % 3,
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_arrays_load_as_scaled_images(tmp_path):
    data = keras_kd.data.load(_write_npz(tmp_path / "toy.npz"))
    assert (data.info.num_classes, data.info.input_shape) == (3, (6, 6, 1))
    assert data.info.slug == "npz_toy"
    x, _ = next(iter(data.train.batch(12)))
    assert float(tf.reduce_max(x)) <= 1.0


def test_npz_num_classes_key_sets_the_class_count(tmp_path):
    data = keras_kd.data.load(_write_npz(tmp_path / "toy.npz", num_classes=np.array(5)))
    assert data.info.num_classes == 5


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"y_test": None}, ValueError, r"lacks arrays \['y_test'\]"),
        ({"y_train": np.arange(11) % 3}, ValueError, "x_train has 12 examples but y_train has 11"),
        ({"y_train": -(np.arange(12) % 3)}, ValueError, "labels must be non-negative"),
        ({"num_classes": np.array(2)}, ValueError, r"labels must be in \[0, 2\); found 2"),
        ({"x_train": np.zeros((12, 2, 2, 2, 1))}, ValueError, "x_train must have rank 1 .* got shape \\(12, 2, 2, 2, 1\\)"),
        ({"y_train": np.zeros((12, 3), int)}, ValueError, "vector of class ids; got shape \\(12, 3\\)"),
        ({"y_train": np.zeros(12, "float32")}, ValueError, "integer class ids; got dtype float32"),
        ({"x_test": np.zeros((6, 5, 5), np.uint8)}, ValueError, "train inputs have shape"),
    ],
)
def test_bad_npz_files_are_named(tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        keras_kd.data.load(_write_npz(tmp_path / "bad.npz", **overrides))


def test_missing_npz_file_is_named(tmp_path):
    # A DatasetError (a ValueError) now, not a FileNotFoundError: every dataset
    # problem is one kind of error, which the apps print as a usage error.
    with pytest.raises(keras_kd.data.DatasetError, match="no file at"):
        keras_kd.data.load(f"npz:{tmp_path}/absent.npz")


@pytest.mark.parametrize("content, message", [
    (b"", r"\(0 bytes\) is not a readable NumPy .npz archive"),
    (b"not an archive at all", r"\(21 bytes\) is not a readable NumPy .npz archive"),
])
def test_a_file_that_is_not_an_npz_archive_is_named(tmp_path, content, message):
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(keras_kd.data.DatasetError, match=f"{re.escape(str(path))}.* {message}"):
        keras_kd.data.load(f"npz:{path}")


@pytest.mark.parametrize("overrides, message", [
    ({"x_train": np.where(np.arange(12 * 36).reshape(12, 6, 6) == 40, np.nan, 0.5)},
     r"x_train holds 1 NaN or infinite values \(the first in example 1\)"),
    ({"y_train": np.array([0, 1, 2] * 3 + [0, 1, 100000])},
     r"labels go up to 100000, but training has only 4 distinct classes \(first missing: 3\)"),
    ({"y_test": np.array([0, 1, 2, 3, 0, 1])},
     r"labels go up to 3, but training has only 3 distinct classes"),
])
def test_stray_labels_and_non_finite_inputs_are_refused(tmp_path, overrides, message):
    with pytest.raises(keras_kd.data.DatasetError, match=message):
        keras_kd.data.load(_write_npz(tmp_path / "bad.npz", **overrides))
    # Unless the class count says those classes exist.
    if "x_train" not in overrides:
        classes = int(max(np.max(labels) for labels in overrides.values()))
        data = keras_kd.data.load(_write_npz(tmp_path / "ok.npz", num_classes=np.array(classes + 1),
                                             **overrides))
        assert data.info.num_classes == classes + 1


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'"):
        keras_kd.data.load("cifar")


@pytest.mark.parametrize("batch_size", [0, 2.5])
def test_bad_batch_size_is_named(digits, batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer; got {batch_size}"):
        keras_kd.data.batched(digits.train, batch_size)


def test_tfds_dataset_loads_from_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE,
                                data_dir=str(tmp_path)):
        data = keras_kd.data.load("tfds:mnist", data_dir=str(tmp_path))
        x, y = next(iter(keras_kd.data.batched(data.train, 16)))
    assert (data.info.num_classes, data.info.input_shape, data.info.slug) == (10, (28, 28, 1), "tfds_mnist")
    assert x.shape == (16, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int32
    assert float(tf.reduce_max(x)) <= 1.0


@pytest.mark.parametrize("drop_remainder, batches", [(False, 7), (True, 6)])
def test_shuffled_batches_shuffle_large_sets_in_blocks_of_whole_batches(
        monkeypatch, drop_remainder, batches):
    from keras_kd.data import epochs

    monkeypatch.setattr(epochs, "SHUFFLE_BLOCK", 20)  # blocks of 16: two batches of 8
    examples = tf.data.Dataset.range(55)
    epoch = epochs.shuffled_batches(examples, 55, 8, drop_remainder)
    first = [b.numpy() for b in epoch(keras_kd.seeds.epoch_seed(0, 0))]
    second = [b.numpy() for b in epoch(keras_kd.seeds.epoch_seed(0, 1))]
    assert len(first) == batches
    assert [len(b) for b in first] == [8] * 6 + ([] if drop_remainder else [7])
    seen = np.concatenate(first)
    assert len(set(seen)) == len(seen) == (48 if drop_remainder else 55)
    assert sorted(np.concatenate(first[:2])) == list(range(16))  # the first block, shuffled
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    again = [b.numpy() for b in epoch(keras_kd.seeds.epoch_seed(0, 0))]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_a_datasets_digest_follows_its_content_and_is_computed_once(tmp_path):
    data = keras_kd.data.load(_write_npz(tmp_path / "a.npz"))
    assert data.digest == data.digest == keras_kd.data.load(_write_npz(tmp_path / "b.npz")).digest
    assert "digest" in vars(data)  # kept: later fingerprints do not reread the data
    other = np.zeros((12, 6, 6), np.uint8)
    assert keras_kd.data.load(_write_npz(tmp_path / "c.npz", x_train=other)).digest != data.digest


def test_a_training_head_is_the_first_examples_with_its_own_digest(digits):
    half = digits.train_head(0.5)
    assert half.info.num_train == 674 == int(half.train.cardinality())
    first = next(iter(digits.train.batch(674)))[0].numpy()
    assert (next(iter(half.train.batch(1000)))[0].numpy() == first).all()
    assert half.digest != digits.digest and digits.train_head(1.0) is digits
    with pytest.raises(ValueError, match="fraction must be in \\(0, 1\\]; got 0"):
        digits.train_head(0)


def test_a_training_head_is_built_once_and_keeps_the_vocabulary():
    digits = keras_kd.data.load("digits")
    assert digits.train_head(0.5) is digits.train_head(0.5)
    assert digits.train_head(0.5) is not digits.train_head(0.25)
    texts = keras_kd.data.load_texts(["a good film", "a bad film"], [1, 0], ["good"], [1],
                                     sequence_length=4)
    assert texts.train_head(0.5).vocabulary == texts.vocabulary


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_eight_bit_values_read_alike_whatever_their_integer_dtype(tmp_path, dtype):
    pixels = np.random.default_rng(0).integers(0, 256, size=(12, 6, 6))
    name = _write_npz(tmp_path / "toy.npz", x_train=pixels.astype(dtype),
                      x_test=pixels[:6].astype(dtype))
    x, _ = next(iter(keras_kd.data.load(name).train.batch(12)))
    np.testing.assert_array_equal(x.numpy()[..., 0], pixels.astype("float32") / 255.0)


def test_integers_beyond_eight_bits_are_read_as_they_are_in_every_split(tmp_path):
    counts = np.arange(12 * 4).reshape(12, 4)  # up to 47 in train
    name = _write_npz(tmp_path / "counts.npz", x_train=counts, x_test=counts[:6] * 20)
    data = keras_kd.data.load(name)
    x_train, _ = next(iter(data.train.batch(12)))
    x_test, _ = next(iter(data.test.batch(6)))
    # The test split goes up to 460, so neither split is scaled.
    np.testing.assert_array_equal(x_train.numpy(), counts)
    np.testing.assert_array_equal(x_test.numpy(), counts[:6] * 20)


@pytest.mark.parametrize("overrides, message", [
    ({"y_train": np.zeros(12, int), "y_test": np.zeros(6, int)}, "every label is 0"),
    ({"y_train": np.zeros(12, int), "y_test": np.zeros(6, int), "num_classes": np.array(1)},
     "num_classes is 1"),
])
def test_a_single_class_dataset_is_refused(tmp_path, overrides, message):
    with pytest.raises(keras_kd.data.DatasetError, match=f"at least 2 classes; {message}"):
        keras_kd.data.load(_write_npz(tmp_path / "one.npz", **overrides))


def test_pipelines_prefetch_with_the_autotuning_model_off(digits):
    # Its thread held the end of a pass for up to a second (docs/measurements.md).
    import keras_kd

    for batches in (keras_kd.data.batched(digits.test, 32),
                    keras_kd.data.batched(digits.train, 32, shuffle=True, seed=0, epochs=2)):
        assert batches.options().autotune.enabled is False
