"""Text classification data: strings and labels, read as token ids.

A text dataset's settings follow its name after a colon
(`tfds:imdb_reviews:vocabulary_size=10000,sequence_length=200`): the
vocabulary's size (padding and out-of-vocabulary token included) and the
length every text is cut or padded to. The vocabulary is adapted on the
training split only, so test texts never shape it, and the splits come back
as `int32` token ids `[examples, sequence_length]`, 0 the padding and 1 the
out-of-vocabulary token. `Splits.vocabulary` keeps the vocabulary, and
`vectorizer` turns it back into the layer that reads raw strings (what an
exported student puts in front of itself).
"""

import re

import numpy as np

DEFAULT_SETTINGS = {"vocabulary_size": 20000, "sequence_length": 256}
# `<name>:<setting>=<value>,...`, the settings last.
_SETTINGS = re.compile(r"^(?P<base>.+):(?P<settings>[A-Za-z_]+=[^:]*)$")


def split_name(name):
    """`(base name, settings text or None)` of a dataset name.

    >>> split_name("tfds:imdb_reviews:sequence_length=64")
    ('tfds:imdb_reviews', 'sequence_length=64')
    >>> split_name("tfds:imdb_reviews:1.0.0")
    ('tfds:imdb_reviews:1.0.0', None)
    """
    match = _SETTINGS.match(name)
    if not match:
        return name, None
    return match.group("base"), match.group("settings")


def parse_settings(name, text):
    """The text settings in `text` (`"vocabulary_size=5000"`) over the defaults.

    Raises:
        ValueError: naming the dataset and the setting that is unknown or
            not an integer in range.

    >>> parse_settings("tfds:imdb_reviews", "sequence_length=64")
    {'vocabulary_size': 20000, 'sequence_length': 64}
    """
    settings = dict(DEFAULT_SETTINGS)
    for part in filter(None, (text or "").split(",")):
        key, _, value = part.partition("=")
        if key not in DEFAULT_SETTINGS:
            raise ValueError(
                f"Dataset {name!r}: unknown text setting {key!r}; expected "
                f"{sorted(DEFAULT_SETTINGS)}."
            )
        try:
            settings[key] = int(value)
        except ValueError:
            raise ValueError(
                f"Dataset {name!r}: {key} must be an integer; got {value!r}."
            ) from None
    if settings["vocabulary_size"] < 3:
        raise ValueError(f"Dataset {name!r}: vocabulary_size must be >= 3 (padding, "
                         f"out-of-vocabulary, a word); got {settings['vocabulary_size']}.")
    if settings["sequence_length"] < 1:
        raise ValueError(f"Dataset {name!r}: sequence_length must be >= 1; got "
                         f"{settings['sequence_length']}.")
    return settings


def canonical_name(base, settings):
    """The dataset's name with every setting that differs from the default.

    >>> canonical_name("npz:reviews.npz", {"vocabulary_size": 20000, "sequence_length": 64})
    'npz:reviews.npz:sequence_length=64'
    """
    changed = [f"{key}={value}" for key, value in sorted(settings.items())
               if DEFAULT_SETTINGS.get(key) != value]
    return f"{base}:{','.join(changed)}" if changed else base


def is_text(array):
    """Whether a NumPy array holds strings."""
    return np.asarray(array).dtype.kind in ("U", "S", "O")


def adapt_vocabulary(texts, vocabulary_size):
    """The vocabulary of `texts` (most frequent tokens first, `""` and
    `"[UNK]"` leading), at most `vocabulary_size` tokens in all."""
    import keras

    layer = keras.layers.TextVectorization(max_tokens=vocabulary_size)
    layer.adapt(np.asarray(texts, dtype=object), batch_size=1024)
    return tuple(str(token) for token in layer.get_vocabulary())


def vectorizer(vocabulary, sequence_length, name="vectorizer"):
    """The `keras.layers.TextVectorization` that reads strings as this
    vocabulary's token ids, cut or padded to `sequence_length`.

    >>> layer = vectorizer(("", "[UNK]", "good", "bad"), sequence_length=4)
    >>> layer(np.array(["Good, bad good!", "odd"])).numpy().tolist()
    [[2, 3, 2, 0], [1, 0, 0, 0]]
    """
    import keras

    return keras.layers.TextVectorization(
        vocabulary=list(vocabulary[2:]), output_sequence_length=sequence_length, name=name
    )


def words_of_ids(vocabulary):
    """The word each token id stands for, to write token ids back as text that
    `vectorizer(vocabulary, ...)` reads as the same ids: padding (0) is
    empty, and the out-of-vocabulary id (1) a word outside the vocabulary.

    >>> words_of_ids(("", "[UNK]", "good", "bad"))
    ('', 'zzunknownzz', 'good', 'bad')
    """
    unknown = "zzunknownzz"
    while unknown in vocabulary:
        unknown += "z"
    return ("", unknown, *vocabulary[2:])


def token_ids(texts, vocabulary, sequence_length):
    """`texts` as int32 token ids `[len(texts), sequence_length]`."""
    layer = vectorizer(vocabulary, sequence_length)
    ids = [np.asarray(layer(np.asarray(texts[start:start + 4096], dtype=object)))
           for start in range(0, len(texts), 4096)]
    return np.concatenate(ids).astype("int32") if ids else np.zeros((0, sequence_length),
                                                                     "int32")
