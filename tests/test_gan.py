import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd import gan
from keras_kd.gan import quality


def _gan(shape=(8, 8, 1), discriminator_steps=1):
    keras.utils.set_random_seed(0)
    model = gan.GAN(gan.make_generator(shape, latent_dim=8, width=32),
                    gan.make_discriminator(shape, width=16),
                    discriminator_steps=discriminator_steps)
    model.compile()
    return model


@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_generator_makes_images_in_the_unit_range(shape):
    generator = gan.make_generator(shape, latent_dim=8, width=32)
    images = generator(np.random.default_rng(0).normal(size=(4, 8)).astype("float32"))
    assert images.shape == (4, *shape)
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 1.0
    assert gan.make_discriminator(shape)(images).shape == (4, 1)


def test_generator_makes_unbounded_signals():
    generator = gan.make_generator((40, 1), latent_dim=8, width=32)
    signals = generator(np.random.default_rng(0).normal(size=(4, 8)).astype("float32"))
    assert signals.shape == (4, 40, 1)
    assert any(type(layer).__name__ == "Conv1DTranspose" for layer in generator.layers)
    assert gan.make_discriminator((40, 1))(signals).shape == (4, 1)


def test_bad_image_shapes_are_named():
    with pytest.raises(ValueError, match=r"at least 4 long; got \(64,\)"):
        gan.make_generator((64,))
    with pytest.raises(ValueError, match=r"at least 4 long; got \(2, 1\)"):
        gan.make_discriminator((2, 1))
    with pytest.raises(ValueError, match="makes images of shape"):
        gan.GAN(gan.make_generator((8, 8, 1)), gan.make_discriminator((8, 8, 3)))
    with pytest.raises(ValueError, match="discriminator_steps must be a positive integer; got 0"):
        gan.GAN(gan.make_generator((8, 8, 1)), gan.make_discriminator((8, 8, 1)),
                discriminator_steps=0)


@pytest.mark.slow
def test_train_step_updates_both_networks(digits):
    model = _gan(discriminator_steps=2)
    networks = (model.generator, model.discriminator)
    kernels = [[w for w in net.trainable_weights if w.path.endswith("kernel")] for net in networks]
    before = [[w.numpy().copy() for w in group] for group in kernels]
    images = digits.train.map(lambda x, y: x).batch(32).take(3)
    logs = model.fit(images, epochs=1, verbose=0, shuffle=False).history
    assert set(logs) == {"discriminator_loss", "generator_loss", "real_score", "fake_score"}
    assert all(np.isfinite(v[-1]) for v in logs.values())
    for group, start in zip(kernels, before):
        assert len(group) >= 4
        assert all(not np.allclose(w.numpy(), b) for w, b in zip(group, start))
    assert int(model.discriminator_optimizer.iterations) == 6
    assert int(model.generator_optimizer.iterations.numpy()) == 3


@pytest.mark.slow
def test_gan_trains_under_mirrored_strategy(digits, mirrored):
    with mirrored.scope():
        model = _gan()
    kernel = model.generator.trainable_weights[0].numpy().copy()
    # (x, y) batches of 16, 16 and 5 (split 3/2 over the replicas); labels are ignored.
    model.fit(digits.train.take(37).batch(16), epochs=1, verbose=0, shuffle=False)
    assert not np.allclose(kernel, model.generator.trainable_weights[0].numpy())
    assert int(model.generator_optimizer.iterations.numpy()) == 3


@pytest.mark.slow
def test_keras_file_round_trip(tmp_path):
    model = _gan()
    model.fit(np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32"),
              batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "gan.keras")
    loaded = keras.saving.load_model(tmp_path / "gan.keras")
    assert isinstance(loaded, gan.GAN) and loaded.discriminator_steps == 1
    assert float(loaded.discriminator_optimizer.learning_rate) == pytest.approx(2e-4)
    assert float(loaded.discriminator_optimizer.beta_1) == pytest.approx(0.5)
    np.testing.assert_allclose(loaded.sample(5, seed=3), model.sample(5, seed=3), atol=1e-6)
    assert not np.allclose(model.sample(5, seed=3), model.sample(5, seed=4))


def test_frechet_distance_is_zero_for_equal_sets_and_grows_with_a_shift(rng):
    features = rng.normal(size=(400, 6))
    assert quality.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    distances = [quality.frechet_distance(features, features + shift) for shift in (0.5, 1.0, 2.0)]
    np.testing.assert_allclose(distances, [6 * 0.25, 6 * 1.0, 6 * 4.0], rtol=1e-6)
    scaled = quality.frechet_distance(features, features * 2.0)
    assert scaled > 1.0  # covariances differ too
    with pytest.raises(ValueError, match=r"same feature count; got shapes \(400, 6\) and \(3, 5\)"):
        quality.frechet_distance(features, np.zeros((3, 5)))


@pytest.mark.slow
def test_teacher_features_and_class_histogram(digits):
    members = [keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(12,)) for _ in range(2)]
    teacher = keras_kd.Ensemble(members)
    images = next(iter(digits.train.batch(40)))[0].numpy()
    assert quality.penultimate_features(teacher, images).shape == (40, 24)
    histogram = quality.class_histogram(teacher, images, 10)
    assert len(histogram) == 10 and sum(histogram) == 40
