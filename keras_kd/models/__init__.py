"""Classifiers by name, all returning logits.

`get(name, input_shape, num_classes)` builds:

- `resnet<depth>`: CIFAR-style ResNets, depth = 6n + 2 (`resnet8`, `resnet20`,
  `resnet56`, ...), stages of 16/32/64 filters; `resnet<depth>_w<k>` has k
  times the filters, and a `_ln` suffix (`resnet8_ln`, `resnet8_w2_ln`)
  normalizes with LayerNorm (over each layer's positions and channels: a
  GroupNorm of one group), which keeps no batch statistics, so a weighted
  mean of two such networks is itself a well-defined network;
- `cnn`: a small VGG-style convolutional network;
- `mlp`: a multilayer perceptron (any input rank);
- `mnist1d_cnn`, `mnist1d_mlp`: the MNIST-1D paper's CNN (signals) and MLP;
- `lstm`, `bilstm`: text classifiers over token ids `(sequence_length,)`
  (embedding, a unidirectional or bidirectional LSTM, a linear head); they
  take `vocabulary_size`, which `for_data` passes from the dataset.

`resnet<depth>` and `cnn` are 2-D on images `(height, width, channels)` and
1-D on signals `(length, channels)`.

Names live in a registry: `register(name, builder)` adds an architecture of
your own, which `get`, the job configs and the apps' flags then accept.
"""

import re

import keras

from keras_kd.models.mnist1d import mnist1d_cnn
from keras_kd.models.mnist1d import mnist1d_mlp
from keras_kd.models.resnet import cifar_resnet
from keras_kd.models.simple import cnn
from keras_kd.models.simple import mlp
from keras_kd.models.text import bilstm
from keras_kd.models.text import lstm

# resnet<depth>, optionally _w<width factor> and _ln (LayerNorm for BatchNorm).
_RESNET = re.compile(r"resnet(\d+)(?:_w(\d+))?(_ln)?$")
# The model registry: name -> builder(input_shape, num_classes, **kwargs).
_BUILDERS = {}


def register(name, builder=None, *, overwrite=False):
    """Registers `builder(input_shape, num_classes, **kwargs)` as model `name`.

    The builder returns a functional `keras.Model` mapping inputs to logits
    (its last layer the logits layer, so `penultimate` finds its features).
    Use it as a function or as a decorator.

    Example:

    >>> @keras_kd.models.register("tiny")
    ... def tiny(input_shape, num_classes):
    ...     inputs = keras.Input(input_shape)
    ...     features = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    ...     return keras.Model(inputs, keras.layers.Dense(num_classes)(features))
    >>> keras_kd.models.get("tiny", (4,), 3).output_shape
    (None, 3)
    >>> keras_kd.models.unregister("tiny")
    """
    if builder is None:
        return lambda function: register(name, function, overwrite=overwrite)
    if not isinstance(name, str) or not name or _RESNET.match(name):
        raise ValueError(f"A model name is a non-empty string not of the resnet<depth> family; "
                         f"got {name!r}.")
    if name in _BUILDERS and not overwrite:
        raise ValueError(f"A model {name!r} is registered already; pass overwrite=True.")
    _BUILDERS[name] = builder
    return builder


def unregister(name):
    """Removes model `name` from the registry."""
    _BUILDERS.pop(name, None)


register("cnn", cnn)
register("mlp", mlp)
register("mnist1d_cnn", mnist1d_cnn)
register("mnist1d_mlp", mnist1d_mlp)
register("lstm", lstm)
register("bilstm", bilstm)


def names():
    """The model names `get` accepts (`resnet<6n+2>` stands for any depth)."""
    return sorted(_BUILDERS) + [
        "resnet8", "resnet20", "resnet56", "resnet<6n+2>[_w<k>][_ln]"]


def input_shape(model):
    """The static per-example input shape of a model (an ensemble's members'),
    or `None` if not known.

    Example:

    >>> keras_kd.models.input_shape(keras_kd.models.get("mlp", (4,), 3))
    (4,)
    """
    members = getattr(model, "members", None)
    if members:
        return input_shape(members[0])
    shape = _static_shape(model, "input_shape")
    return None if shape is None else tuple(shape[1:])


def _static_shape(model, attribute):
    """`model.input_shape` or `.output_shape` of a single-tensor model, or `None`."""
    try:
        shape = getattr(model, attribute)
    except (AttributeError, ValueError, RuntimeError):
        return None
    if isinstance(shape, list) and len(shape) == 1:
        shape = shape[0]
    return shape if isinstance(shape, tuple) else None


def softmax_output_layer(model):
    """The name of the layer that turns `model`'s outputs into probabilities
    (a softmax activation or layer at the end), or `None` for logits.

    Example:

    >>> inputs = keras.Input((4,))
    >>> probabilities = keras.layers.Dense(3, activation="softmax", name="head")(inputs)
    >>> keras_kd.models.softmax_output_layer(keras.Model(inputs, probabilities))
    'head'
    """
    for member in getattr(model, "members", None) or []:
        found = softmax_output_layer(member)
        if found:
            return found
    layers = getattr(model, "layers", None)
    if not layers or getattr(model, "members", None):
        return None
    last = layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or activation is keras.activations.softmax \
            or getattr(activation, "__name__", "") == "softmax":
        return last.name
    return None


def num_classes(model):
    """The static class count of a model's logits, or `None` if not known.

    Example:

    >>> keras_kd.models.num_classes(keras_kd.models.get("mlp", (4,), 3))
    3
    """
    shape = _static_shape(model, "output_shape")
    if not shape:
        return None
    return shape[-1]


def penultimate(model, name=None):
    """A model mapping `model`'s inputs to its penultimate-layer features.

    The features are the input of the last layer (the logits layer of every
    model here), flattened to `[batch, features]`. For an ensemble (a model
    with `members`, like `keras_kd.Ensemble`), the members' features side by
    side.

    Args:
        model: a functional Keras model, or an ensemble of them.
        name: the extractor's name (default `<model name>_features`).

    Example:

    >>> model = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    >>> keras_kd.models.penultimate(model).output_shape
    (None, 64)
    """
    extractor = features_and_logits(model)
    inputs = extractor.inputs[0] if len(extractor.inputs) == 1 else extractor.inputs
    return keras.Model(inputs, extractor.outputs[0], name=name or f"{model.name}_features")


def features_and_logits(model, name=None):
    """A model mapping `model`'s inputs to `(penultimate features, logits)`.

    One call gives both, so a report that needs a teacher's features (for
    CKA) and its logits runs the teacher once per batch. For an ensemble,
    the members' features side by side and the ensemble's logits
    (`keras_kd.ensemble.ensemble_logits` of the members').

    Example:

    >>> model = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> [tuple(output.shape) for output in keras_kd.models.features_and_logits(model).outputs]
    [(None, 8), (None, 3)]
    """
    members = getattr(model, "members", None)
    if members:
        from keras_kd.ensemble import ensemble_logits

        parts = [features_and_logits(member, f"member{k}_features")
                 for k, member in enumerate(members)]
        inputs = keras.Input(parts[0].inputs[0].shape[1:], dtype=parts[0].inputs[0].dtype)
        outputs = [part(inputs) for part in parts]
        features = [feature for feature, _ in outputs]
        features = keras.layers.Concatenate()(features) if len(features) > 1 else features[0]
        logits = ensemble_logits(keras.ops.stack([logit for _, logit in outputs], axis=0))
        return keras.Model(inputs, [features, logits], name=name or f"{model.name}_features")
    inputs = getattr(model, "inputs", None)
    if not isinstance(model, keras.Model) or not inputs or len(model.layers) < 2:
        raise ValueError(
            "penultimate needs a functional Keras model whose last layer maps "
            f"features to logits; got {type(model).__name__} {getattr(model, 'name', '')!r}."
        )
    features = model.layers[-1].input
    if len(features.shape) > 2:
        features = keras.layers.Flatten()(features)
    if len(inputs) == 1:
        inputs = inputs[0]  # so the extractor takes a tensor, as the model does
    return keras.Model(inputs, [features, model.outputs[0]], name=name or f"{model.name}_features")


def check_name(name):
    """Raises a ValueError naming `name` if `get` does not know it."""
    match = _RESNET.match(name)
    if match:
        depth = int(match.group(1))
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(
                f"Unknown model {name!r}: a CIFAR ResNet's depth is 6n + 2 with "
                f"n >= 1 (8, 14, 20, ..., 56, 110); got {depth}."
            )
        if match.group(2) is not None and int(match.group(2)) < 1:
            raise ValueError(f"Unknown model {name!r}: the width factor _w<k> needs k >= 1.")
        return
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name!r}; expected one of {names()}.")


def get(name, input_shape, num_classes, **kwargs):
    """Builds the named classifier.

    Args:
        name: a name from `names()`.
        input_shape: shape of one example, e.g. `(32, 32, 3)`.
        num_classes: number of output logits.
        **kwargs: architecture options of the builder (e.g. `hidden_units` for
            `mlp`, `width` for `cnn`).

    Returns:
        A functional `keras.Model` mapping inputs to logits.

    Example:

    >>> model = keras_kd.models.get("resnet20", (32, 32, 3), 100)
    >>> model.output_shape
    (None, 100)
    """
    check_name(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}.")
    input_shape = tuple(input_shape)
    match = _RESNET.match(name)
    if match:
        return cifar_resnet(
            int(match.group(1)), input_shape, num_classes, name=name,
            width=int(match.group(2) or 1),
            normalization="layer" if match.group(3) else "batch", **kwargs,
        )
    return _BUILDERS[name](input_shape, num_classes, **kwargs)


def for_data(name, info, **kwargs):
    """Builds the named classifier for a dataset: `get` with its input shape,
    class count and, for token inputs, its vocabulary size.

    Args:
        name: a name from `names()`.
        info: the dataset's `keras_kd.data.DatasetInfo`.
        **kwargs: architecture options, as `get` takes them.

    Example:

    >>> info = keras_kd.data.load("digits").info
    >>> keras_kd.models.for_data("mlp", info).output_shape
    (None, 10)
    """
    if info.vocabulary_size:
        kwargs.setdefault("vocabulary_size", info.vocabulary_size)
    return get(name, info.input_shape, info.num_classes, **kwargs)
