import numpy as np
import pytest
import tensorflow as tf

from keras_kd.data import Policy
from keras_kd.data import augment
from keras_kd.data import default_flip

SEED = tf.constant([3, 7], tf.int64)


def _one_hot_batch(rng, batch_size=8, shape=(6, 6, 1), constant=False):
    """Images, and one-hot labels with a class per example (to trace mixing)."""
    if constant:
        values = rng.permutation(batch_size).astype("float32") / batch_size
        images = np.broadcast_to(values[:, None, None, None], (batch_size, *shape))
    else:
        images = rng.uniform(size=(batch_size, *shape))
    return {
        "x": tf.constant(images, tf.float32),
        "y": tf.eye(batch_size, dtype=tf.float32),
    }


@pytest.mark.parametrize(
    "spec, options, message",
    [
        ("crop", {}, "Unknown policy stage(s) ['crop'] in 'crop'"),
        ("", {}, "'+'-separated list of stages"),
        ("identity+mixup", {}, "'identity' stands alone"),
        ("mixup+mixup", {}, "repeats stage(s) ['mixup']"),
        ("mixup", {"mixup_alpha": 0.0}, "mixup_alpha must be > 0; got 0.0"),
        ("mixup", {"mixup_portion": 1.5}, "mixup_portion must be in [0, 1]; got 1.5"),
        ("gan", {"synthetic_fraction": 1.5}, "synthetic_fraction must be in [0, 1]; got 1.5"),
        ("gan", {"synthetic_temperature": -1.0}, "synthetic_temperature must be > 0"),
        ("crop_flip", {"flip": "yes"}, "flip must be True or False; got 'yes'"),
    ],
)
def test_bad_policies_are_named(spec, options, message):
    with pytest.raises(ValueError) as error:
        Policy.parse(spec, **options)
    assert message in str(error.value)


def test_policy_checks_the_input_shape():
    with pytest.raises(ValueError, match=r"\['grayscale'\] need RGB images .* \(8, 8, 1\)"):
        Policy.parse("crop_flip+grayscale").validate((8, 8, 1))
    with pytest.raises(ValueError, match=r"stage 'cutmix' applies to signals or images; "
                                         r"the inputs are features of shape \(64,\)"):
        Policy.parse("cutmix").validate((64,))
    with pytest.raises(ValueError, match=r"stage 'rotation' applies to images; the inputs "
                                         r"are signals of shape \(40, 1\)"):
        Policy.parse("shift+rotation").validate((40, 1))
    with pytest.raises(ValueError, match=r"stage 'shift' applies to signals; .* \(8, 8, 1\)"):
        Policy.parse("shift").validate((8, 8, 1))
    Policy.parse("mixup+noise").validate((64,))
    Policy.parse("shift+cutmix+mixup+noise+gan").validate((40, 1))
    Policy.parse("gan").validate((64,))  # synthetic inputs need no image stage
    Policy.parse("grayscale+color_jitter").validate((16, 16, 3))


def test_policy_properties_and_description():
    static = Policy.parse("identity")
    assert not static.stochastic and not static.mixes_labels and not static.uses_synthetic
    policy = Policy.parse("crop_flip+cutmix+gan", flip=False, mixup_portion=0.5,
                          synthetic_temperature=2.0)
    assert policy.stochastic and policy.mixes_labels and policy.uses_synthetic
    assert policy.describe((32, 32, 3)) == {
        "policy": "crop_flip+cutmix+gan", "flip": False, "crop_padding": 4,
        "mixup_alpha": 1.0, "mixup_portion": 0.5,
        "synthetic_fraction": 0.5, "synthetic_temperature": 2.0,
    }
    assert [stage.name for stage in policy.augmentation((32, 32, 3))] == ["crop", "cutmix"]
    flipping = Policy.parse("crop_flip", flip=True).augmentation((32, 32, 3))
    assert [stage.name for stage in flipping] == ["crop", "hflip"]


def test_flip_is_off_by_default_only_for_digits():
    assert [default_flip(name) for name in ("digits", "tfds:mnist", "tfds:svhn_cropped/v3")] == [
        False, False, False]
    assert default_flip("tfds:cifar10") and default_flip("npz:/data/cifar.npz")


@pytest.mark.parametrize("size, padding", [(8, 1), (28, 4), (32, 4), (64, 8), (2, 1)])
def test_crop_padding_scales_with_the_image(size, padding):
    assert augment.crop_padding(size) == padding


def test_random_crop_draws_one_window_per_image():
    batch_size, size, pad = 64, 6, 2
    image = np.arange(1, size * size + 1, dtype="float32").reshape(size, size, 1)
    batch = {"x": tf.constant(np.stack([image] * batch_size))}
    cropped = augment.RandomCrop(pad)(batch, SEED)["x"].numpy()
    padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)])
    windows = {
        (r, c): padded[r:r + size, c:c + size]
        for r in range(2 * pad + 1) for c in range(2 * pad + 1)
    }
    offsets = [
        next(key for key, window in windows.items() if np.array_equal(window, crop))
        for crop in cropped  # StopIteration: a crop that is no window of the padded image
    ]
    assert len(set(offsets)) > 10  # per image, not one window for the batch
    again = augment.RandomCrop(pad)(batch, SEED)["x"].numpy()
    np.testing.assert_array_equal(cropped, again)


@pytest.mark.parametrize("stage", [augment.MixUp(alpha=1.0), augment.CutMix(alpha=1.0)])
def test_mixed_labels_are_the_pixel_shares_of_each_source(rng, stage):
    # Constant images of distinct values: an image's mean is the mix of sources.
    batch = _one_hot_batch(rng, batch_size=16, constant=True)
    mixed = stage(batch, SEED)
    labels = mixed["y"].numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    sources = batch["x"].numpy()[:, 0, 0, 0]
    np.testing.assert_allclose(
        mixed["x"].numpy().mean(axis=(1, 2, 3)), labels @ sources, atol=1e-6
    )
    assert (labels.max(axis=1) < 1).sum() >= 8  # most examples were mixed


def test_mixup_blends_whole_images(rng):
    batch = _one_hot_batch(rng, batch_size=16)
    mixed = augment.MixUp(alpha=1.0)(batch, SEED)
    expected = np.einsum("ij,jhwc->ihwc", mixed["y"].numpy(), batch["x"].numpy())
    np.testing.assert_allclose(mixed["x"].numpy(), expected, atol=1e-6)


def test_cutmix_pastes_a_box_from_one_partner(rng):
    batch = _one_hot_batch(rng, batch_size=16, constant=True)
    mixed = augment.CutMix(alpha=1.0)(batch, SEED)
    sources = batch["x"].numpy()[:, 0, 0, 0]
    for image, label in zip(mixed["x"].numpy(), mixed["y"].numpy()):
        present = set(np.unique(image).tolist())
        assert present <= set(sources[label > 0].tolist()) and len(present) <= 2


@pytest.mark.parametrize("stage_class", [augment.MixUp, augment.CutMix])
def test_portion_mixes_only_the_first_share_of_the_batch(rng, stage_class):
    batch = _one_hot_batch(rng, batch_size=16)
    mixed = stage_class(alpha=1.0, portion=0.25)(batch, SEED)
    np.testing.assert_array_equal(mixed["x"][4:], batch["x"][4:])
    np.testing.assert_array_equal(mixed["y"][4:], batch["y"][4:])
    assert not np.array_equal(mixed["y"][:4], batch["y"][:4])
    untouched = stage_class(alpha=1.0, portion=0.0)(batch, SEED)
    np.testing.assert_array_equal(untouched["x"], batch["x"])


@pytest.mark.parametrize(
    "name", ["rotation", "hflip", "vflip", "perspective", "grayscale", "color_jitter", "blur"]
)
def test_ablation_stages_are_seeded_and_keep_the_batch_shape(rng, name):
    images = tf.constant(rng.uniform(size=(16, 12, 12, 3)), tf.float32)
    stage = augment.ablation_stage(name, channels=3)
    first = stage({"x": images, "y": tf.zeros([16])}, SEED)
    again = stage({"x": images, "y": tf.zeros([16])}, SEED)
    other = stage({"x": images, "y": tf.zeros([16])}, SEED + 1)
    assert first["x"].shape == images.shape and first["x"].dtype == tf.float32
    np.testing.assert_array_equal(first["x"], again["x"])
    assert not np.array_equal(first["x"], images)
    assert not np.array_equal(first["x"], other["x"])
    np.testing.assert_array_equal(first["y"], tf.zeros([16]))


def test_unknown_ablation_stage_is_named():
    with pytest.raises(ValueError, match="Unknown augmentation stage 'sharpen'"):
        augment.ablation_stage("sharpen", 3)
