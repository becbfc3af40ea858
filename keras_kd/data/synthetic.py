"""Sources of unlabeled inputs for the `gan` policy of a distillation set.

A `SyntheticSource` draws `num` inputs from a stateless seed, inside the
`tf.data` graph, so synthetic examples are as reproducible as the rest of the
batch. It also has a fingerprint, so a teacher-output cache that holds
synthetic examples is never reused for another source.
"""

import numpy as np
import tensorflow as tf

from keras_kd import digests


class SyntheticSource:
    """Draws unlabeled inputs: `source.sample(num, seed) -> [num, *shape]`.

    Build one with `SyntheticSource.from_generator(generator)` (a Keras model
    from latent vectors to inputs, such as the GAN's) or
    `SyntheticSource.from_inputs(array)` (a user's unlabeled set, drawn with
    replacement).

    Args:
        sample: a function `(num, seed) -> inputs` of TensorFlow ops, `seed` an
            int64 tensor of shape `[2]`.
        input_shape: the shape of one input.
        fingerprint: a string that changes whenever the samples would.
        description: a short human-readable name, for reports.

    Example:

    >>> source = SyntheticSource.from_inputs(np.zeros((5, 8, 8, 1), "float32"))
    >>> source.sample(3, tf.constant([0, 1], tf.int64)).shape
    TensorShape([3, 8, 8, 1])
    """

    def __init__(self, sample, input_shape, fingerprint, description):
        self._sample = sample
        self.input_shape = tuple(input_shape)
        self.fingerprint = fingerprint
        self.description = description

    def sample(self, num, seed):
        """`num` inputs drawn from the stateless `seed`, as float32."""
        return tf.cast(self._sample(num, seed), tf.float32)

    @classmethod
    def from_generator(cls, generator):
        """Samples `generator(z)` for `z ~ N(0, I)` of its latent size."""
        latent_shape = tuple(generator.input_shape[1:])
        if None in latent_shape:
            raise ValueError(
                f"The generator's latent input must have a fixed shape; got "
                f"{generator.input_shape}."
            )

        def sample(num, seed):
            latent = tf.random.stateless_normal((num, *latent_shape), seed)
            return generator(latent, training=False)

        return cls(
            sample,
            input_shape=generator.output_shape[1:],
            fingerprint="generator:" + digests.weights_digest(generator),
            description=f"generator {generator.name}",
        )

    @classmethod
    def from_inputs(cls, inputs):
        """Samples, with replacement, from an array of unlabeled inputs."""
        inputs = np.asarray(inputs, dtype="float32")
        if inputs.ndim < 2 or len(inputs) == 0:
            raise ValueError(
                "Unlabeled inputs must be a non-empty array [examples, ...]; got "
                f"shape {inputs.shape}."
            )
        table = tf.constant(inputs)

        def sample(num, seed):
            indices = tf.random.stateless_uniform(
                [num], seed, minval=0, maxval=len(inputs), dtype=tf.int32
            )
            return tf.gather(table, indices)

        return cls(
            sample,
            input_shape=inputs.shape[1:],
            fingerprint="inputs:" + digests.bytes_digest(inputs.tobytes()),
            description=f"{len(inputs)} unlabeled inputs",
        )
