"""Text classifiers over token ids: an LSTM and a bidirectional LSTM.

Each takes `[batch, sequence_length]` integer token ids, 0 the padding (a
`keras.layers.TextVectorization` layer's output), masks the padding, and
returns logits; the input of its last layer is the recurrent summary of the
sequence, so `keras_kd.models.penultimate` gives its features.
"""

import keras
from keras import layers


def _token_inputs(input_shape, vocabulary_size, embedding_dim, name):
    if len(tuple(input_shape)) != 1:
        raise ValueError(
            f"{name} reads token ids of shape (sequence_length,); got input shape "
            f"{tuple(input_shape)}."
        )
    if not isinstance(vocabulary_size, int) or vocabulary_size < 2:
        raise ValueError(
            f"{name} needs vocabulary_size, an integer >= 2 (the token ids' range, "
            f"padding and out-of-vocabulary included); got {vocabulary_size!r}."
        )
    inputs = keras.Input(tuple(input_shape), dtype="int32")
    embedded = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True,
                                name="embedding")(inputs)
    return inputs, embedded


def lstm(input_shape, num_classes, vocabulary_size=None, embedding_dim=128, units=128,
         name="lstm"):
    """Embedding, one LSTM layer, a linear head: the paper's text classifier.

    Example:

    >>> model = keras_kd.models.get("lstm", (20,), 2, vocabulary_size=100)
    >>> model(np.array([[5, 9, 2] + [0] * 17])).shape
    TensorShape([1, 2])
    """
    inputs, x = _token_inputs(input_shape, vocabulary_size, embedding_dim, name)
    x = layers.LSTM(units, name="lstm")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def bilstm(input_shape, num_classes, vocabulary_size=None, embedding_dim=128, units=64,
           name="bilstm"):
    """Embedding, one bidirectional LSTM layer (its two final states side by
    side), a linear head."""
    inputs, x = _token_inputs(input_shape, vocabulary_size, embedding_dim, name)
    x = layers.Bidirectional(layers.LSTM(units), name="bilstm")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
