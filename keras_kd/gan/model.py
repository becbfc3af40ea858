"""`GAN`: a generator and a discriminator trained against each other with `fit`."""

import keras
import tensorflow as tf

from keras_kd import batch as batch_lib
from keras_kd import multi_worker
from keras_kd import seeds


@keras.saving.register_keras_serializable(package="keras_kd")
class GAN(multi_worker.MultiWorkerFit, keras.Model):
    """Trains a generator against a discriminator with the hinge loss.

    Each step takes `discriminator_steps` discriminator updates on the real
    batch and fresh samples, then one generator update:

        D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))
        G: -mean(D(G(z)))

    Per-example losses are averaged over the global batch, so a step is the
    same on one device and under a `tf.distribute` strategy (build and
    compile the GAN in the strategy's scope). Latents are drawn statelessly
    from `seed`, the step and the replica, so replicas never share samples.
    Batches are images, `(images, labels)` or dicts with `"x"`; labels are
    ignored. Calling the GAN samples the generator.

    Args:
        generator: a Keras model from `[batch, latent_dim]` latents to images.
        discriminator: a Keras model from images to `[batch, 1]` scores.
        discriminator_steps: discriminator updates per generator update.
        seed: seed of the latents drawn in training.

    Example:

    >>> from keras_kd import gan
    >>> model = gan.GAN(gan.make_generator((8, 8, 1), latent_dim=16),
    ...                 gan.make_discriminator((8, 8, 1)))
    >>> model.compile()
    >>> images = np.random.rand(32, 8, 8, 1).astype("float32")
    >>> logs = model.fit(images, batch_size=16, epochs=1, verbose=0)
    >>> sorted(logs.history)
    ['discriminator_loss', 'fake_score', 'generator_loss', 'real_score']
    """

    def __init__(self, generator, discriminator, discriminator_steps=1, seed=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(discriminator_steps, bool) or not isinstance(discriminator_steps, int) \
                or discriminator_steps < 1:
            raise ValueError(
                "discriminator_steps must be a positive integer; got "
                f"{discriminator_steps!r}."
            )
        if tuple(generator.output_shape[1:]) != tuple(discriminator.input_shape[1:]):
            raise ValueError(
                f"The generator makes images of shape {generator.output_shape[1:]}, "
                f"but the discriminator takes {discriminator.input_shape[1:]}."
            )
        self.generator = generator
        self.discriminator = discriminator
        self.discriminator_steps = discriminator_steps
        self.seed = int(seed)
        self.latent_dim = int(generator.input_shape[-1])
        if generator.built and discriminator.built:
            self.built = True  # calling the GAN samples; Keras must not call it on images
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("discriminator_loss", "generator_loss", "real_score", "fake_score")
        }

    def compile(self, generator_optimizer=None, discriminator_optimizer=None, **kwargs):
        """Sets the two optimizers (default: Adam, lr 2e-4, betas 0.5 and 0.999).

        Under the `mixed_float16` dtype policy each is wrapped in a
        `keras.optimizers.LossScaleOptimizer`, as `Model.compile` does for one.
        """
        self.generator_optimizer = _scaled(generator_optimizer or _adam(), self.dtype_policy)
        self.discriminator_optimizer = _scaled(
            discriminator_optimizer or _adam(), self.dtype_policy
        )
        # Built here, in the caller's strategy scope, not lazily inside a replica.
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        # Keras' own `optimizer` slot: the generator's, so fit builds no other.
        super().compile(optimizer=self.generator_optimizer, auto_scale_loss=False, **kwargs)

    def get_compile_config(self):
        return {
            name: keras.saving.serialize_keras_object(_unscaled(getattr(self, name)))
            for name in ("generator_optimizer", "discriminator_optimizer")
        }

    def compile_from_config(self, config):
        """Recompiles a loaded GAN with its two optimizers' settings."""
        self.compile(**{
            name: keras.saving.deserialize_keras_object(value)
            for name, value in config.items()
        })

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, latents, training=False):
        return self.generator(latents, training=training)

    def sample(self, num, seed=0):
        """`num` generator samples from latents drawn statelessly from `seed`."""
        latents = tf.random.stateless_normal((num, self.latent_dim), [seed, 0])
        return self.generator(latents, training=False)

    def train_step(self, data):
        real = _images(data)
        batch_size = tf.shape(real)[0]
        for draw in range(self.discriminator_steps):
            latents = self._latents(batch_size, draw)
            with tf.GradientTape() as tape:
                real_scores = _scores(self.discriminator(real, training=True))
                fake = self.generator(latents, training=True)
                fake_scores = _scores(self.discriminator(fake, training=True))
                per_example = tf.nn.relu(1.0 - real_scores) + tf.nn.relu(1.0 + fake_scores)
                loss = self.discriminator_optimizer.scale_loss(_average(per_example))
            self._apply(self.discriminator_optimizer, self.discriminator, tape, loss)
        latents = self._latents(batch_size, self.discriminator_steps)
        with tf.GradientTape() as tape:
            fake = self.generator(latents, training=True)
            generator_per_example = -_scores(self.discriminator(fake, training=True))
            loss = self.generator_optimizer.scale_loss(_average(generator_per_example))
        self._apply(self.generator_optimizer, self.generator, tape, loss)
        self.trackers["discriminator_loss"].update_state(per_example)
        self.trackers["generator_loss"].update_state(generator_per_example)
        self.trackers["real_score"].update_state(real_scores)
        self.trackers["fake_score"].update_state(fake_scores)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def _latents(self, batch_size, draw):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.constant([self.seed, 0], tf.int64)
        for part in (self.generator_optimizer.iterations, replica, draw):
            seed = seeds.fold_in(seed, part)
        return tf.random.stateless_normal((batch_size, self.latent_dim), seed)

    @staticmethod
    def _apply(optimizer, model, tape, scaled_loss):
        weights = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(scaled_loss, weights), weights))

    def get_config(self):
        config = super().get_config()
        config.update(
            generator=keras.saving.serialize_keras_object(self.generator),
            discriminator=keras.saving.serialize_keras_object(self.discriminator),
            discriminator_steps=self.discriminator_steps,
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def _scores(outputs):
    """Discriminator outputs as float32 per-example scores (losses in float32)."""
    return tf.cast(tf.reshape(outputs, [-1]), tf.float32)


def _scaled(optimizer, dtype_policy):
    if dtype_policy.name == "mixed_float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _unscaled(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


def _adam():
    return keras.optimizers.Adam(2e-4, beta_1=0.5, beta_2=0.999)


def _images(data):
    if isinstance(data, (list, tuple)):
        data = data[0]
    if isinstance(data, dict):
        data = data["x"]
    return tf.cast(data, tf.float32)


def _average(per_example):
    return tf.nn.compute_average_loss(
        per_example, global_batch_size=batch_lib.global_batch_size(per_example)
    )
