"""Content fingerprints of models and datasets, to key caches on disk."""

import hashlib

import keras
import numpy as np
import tensorflow as tf


def weights_fingerprint(model):
    """A hex digest of a model's class, weight names, shapes and values.

    Example:

    >>> model = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> len(weights_fingerprint(model))
    64
    """
    digest = hashlib.sha256(type(model).__name__.encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(str((weight.path, value.shape, value.dtype.str)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset, chunk=1024):
    """A hex digest of every element of an unbatched dataset, in order."""
    digest = hashlib.sha256(str(dataset.element_spec).encode())
    for batch in dataset.batch(chunk).prefetch(tf.data.AUTOTUNE):
        for component in tf.nest.flatten(batch):
            digest.update(np.ascontiguousarray(component.numpy()).tobytes())
    return digest.hexdigest()
