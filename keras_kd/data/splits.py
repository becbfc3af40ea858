"""What a loaded dataset is: its splits, its `DatasetInfo`, the kind of its inputs.

Every dataset comes back as a `Splits`: unbatched `tf.data` splits of `(x, y)`
pairs and a `DatasetInfo`. The rank of the input shape says what an example
is (`DatasetInfo.kind`): `(features,)` a feature vector, `(length, channels)`
a signal, `(height, width, channels)` an image; int32 token ids
`(sequence_length,)` are `"tokens"`.
"""

import dataclasses
import functools
import os
import re

import numpy as np
import tensorflow as tf

from keras_kd import digests
from keras_kd.data import text as text_lib

# What an example is, by the rank of its shape.
KINDS = {1: "features", 2: "signals", 3: "images"}
# Token ids of a text dataset: rank 1 like features, but integers.
TOKENS = "tokens"


def input_kind(input_shape, dtype=None):
    """`"features"`, `"signals"` or `"images"` for a per-example input shape;
    `"tokens"` for integer inputs of rank 1 (token ids).

    >>> input_kind((40, 1)), input_kind((8, 8, 1)), input_kind((64,), "int32")
    ('signals', 'images', 'tokens')
    """
    rank = len(tuple(input_shape))
    if rank == 1 and dtype is not None and np.issubdtype(np.dtype(dtype), np.integer):
        return TOKENS
    return KINDS.get(rank, f"rank-{rank} inputs")


class DatasetError(ValueError):
    """A dataset that cannot be used as it is: its name, file, arrays or labels.

    Raised by `load` before any model is built; the message names the
    dataset (and file) and what was expected. The apps print it as a usage
    error.
    """


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset.

    `settings` holds how a generated dataset was made (MNIST-1D's size and
    noise, say) or read (a text dataset's vocabulary size and sequence
    length); it is empty for data read as it is. `vocabulary_size` is the
    range of a text dataset's token ids (`None` for other data).
    """

    name: str
    num_classes: int
    input_shape: tuple
    num_train: int
    num_test: int
    settings: dict = dataclasses.field(default_factory=dict)
    vocabulary_size: int | None = None

    @property
    def kind(self):
        """`"features"`, `"signals"` or `"images"`, by the input's rank;
        `"tokens"` for a text dataset."""
        return TOKENS if self.vocabulary_size else input_kind(self.input_shape)

    @property
    def key_name(self):
        """The name as the keys of members and controls take it: an npz file's
        path left out (its content is in every key as the data's digest), so
        the same file reached by another path reuses its members.

        >>> DatasetInfo("npz:/data/x.npz:sequence_length=64", 2, (64,), 1, 1).key_name
        'npz:sequence_length=64'
        """
        base, settings = text_lib.split_name(self.name)
        if not base.startswith("npz:"):
            return self.name
        return "npz" + (f":{settings}" if settings else "")

    @property
    def slug(self):
        """The name as a folder name (`tfds:cifar10` -> `tfds_cifar10`)."""
        base, settings = text_lib.split_name(self.name)
        if base.startswith("npz:"):
            base = "npz:" + os.path.splitext(os.path.basename(base[4:]))[0]
        if settings:
            base += ":" + settings
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", base)


@dataclasses.dataclass(frozen=True)
class Splits:
    """A dataset's `train` and `test` splits and its `info`."""

    train: tf.data.Dataset
    test: tf.data.Dataset
    info: DatasetInfo
    vocabulary: tuple = ()

    def vectorizer(self):
        """For a text dataset, the layer that reads raw strings as its token
        ids (`keras_kd.data.text.vectorizer`); `None` for other data."""
        if not self.vocabulary:
            return None
        return text_lib.vectorizer(self.vocabulary, self.info.input_shape[0])

    @functools.cached_property
    def digest(self):
        """A digest of the content of both splits, in order: what fingerprints of
        trained artifacts record (computed once per `Splits`)."""
        both = digests.dataset_digest(self.train) + digests.dataset_digest(self.test)
        return digests.text_digest(both, length=16)

    def train_head(self, fraction):
        """These splits with the training split cut to its first `fraction` of
        examples (at least one): the D0 of the data-recycling experiment.

        Example:

        >>> data = keras_kd.data.load("digits")
        >>> data.train_head(0.5).info.num_train, data.info.num_train
        (674, 1347)
        """
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}.")
        if fraction == 1.0:
            return self
        # One object per fraction, so its digest (a read of both splits) is
        # computed once however many jobs' parts ask for the same head.
        if fraction not in self._heads:
            count = max(1, round(fraction * self.info.num_train))
            info = dataclasses.replace(
                self.info, num_train=count, settings={**self.info.settings, "train_head": count}
            )
            train = self.train.take(count).apply(tf.data.experimental.assert_cardinality(count))
            self._heads[fraction] = Splits(train, self.test, info, self.vocabulary)
        return self._heads[fraction]

    def train_tail(self, fraction):
        """These splits with the training split cut to the examples after its
        first `fraction` (those `train_head(fraction)` leaves out): the fresh
        D1 of the data-recycling experiment, which the teachers never saw.

        Example:

        >>> data = keras_kd.data.load("digits")
        >>> data.train_tail(0.5).info.num_train
        673
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1) for a tail; got {fraction!r}.")
        key = ("tail", fraction)
        if key not in self._heads:
            skipped = self.train_head(fraction).info.num_train
            count = self.info.num_train - skipped
            if count < 1:
                raise ValueError(f"No examples are left after the first {skipped} of "
                                 f"{self.info.num_train}; lower the fraction {fraction!r}.")
            info = dataclasses.replace(
                self.info, num_train=count, settings={**self.info.settings, "train_tail": count}
            )
            train = self.train.skip(skipped).apply(
                tf.data.experimental.assert_cardinality(count))
            self._heads[key] = Splits(train, self.test, info, self.vocabulary)
        return self._heads[key]

    @functools.cached_property
    def _heads(self):
        return {}
