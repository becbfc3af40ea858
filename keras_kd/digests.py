"""Content digests: what keys trained artifacts, caches, run folders and results.

Every key keras_kd writes is a SHA-256 of content, never of a name or a
path: `json_digest` of settings, `text_digest` of joined digests, `bytes_digest`
of an array's bytes,
`file_digest` of a saved file, `weights_digest` of a model and
`dataset_digest` of a `tf.data.Dataset`'s elements. Changing one changes
every key built on it, so `tests/test_keys.py` pins their values.

Example:

>>> json_digest({"b": 1, "a": [2]}, length=8) == json_digest({"a": [2], "b": 1}, length=8)
True
"""

import hashlib
import json

import keras
import numpy as np
import tensorflow as tf


def json_digest(value, length=None):
    """The hex SHA-256 of `value` as JSON with sorted keys (non-JSON values as `str`).

    Args:
        value: a JSON-ready value (dicts, lists, strings, numbers, `None`).
        length: keep this many hex digits (all 64 by default).
    """
    encoded = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:length]


def text_digest(text, length=None):
    """The hex SHA-256 of a string's UTF-8 bytes, cut to `length` digits."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def bytes_digest(data, length=None):
    """The hex SHA-256 of `bytes`, cut to `length` digits."""
    return hashlib.sha256(data).hexdigest()[:length]


def file_digest(path):
    """The SHA-256 of a file's bytes, as hex: what records of saved artifacts hold."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model):
    """A hex digest of a model's class, weight names, shapes and values.

    Example:

    >>> model = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> len(weights_digest(model))
    64
    """
    digest = hashlib.sha256(type(model).__name__.encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(str((weight.path, value.shape, value.dtype.str)).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def dataset_digest(dataset, chunk=1024):
    """A hex digest of every element of an unbatched dataset, in order."""
    digest = hashlib.sha256(str(dataset.element_spec).encode())
    for batch in dataset.batch(chunk).prefetch(tf.data.AUTOTUNE):
        for component in tf.nest.flatten(batch):
            digest.update(np.ascontiguousarray(component.numpy()).tobytes())
    return digest.hexdigest()
