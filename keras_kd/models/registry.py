"""The model registry: classifiers by name, `get` and `for_data` to build them."""

import re

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
# name -> the input kinds it reads (`keras_kd.data.DatasetInfo.kind`); absent: any.
_INPUTS = {}
# What the resnet<depth> family reads.
_RESNET_INPUTS = ("signals", "images")


def register(name, builder=None, *, inputs=None, overwrite=False):
    """Registers `builder(input_shape, num_classes, **kwargs)` as model `name`.

    The builder returns a functional `keras.Model` mapping inputs to logits
    (its last layer the logits layer, so `penultimate` finds its features).
    Use it as a function or as a decorator. `inputs` names the kinds of
    input it reads (`"features"`, `"signals"`, `"images"`, `"tokens"`), so
    a job refuses it on other data before training (`check_fits`); `None`
    leaves that to the builder.

    Example:

    >>> import keras
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
        return lambda function: register(name, function, inputs=inputs, overwrite=overwrite)
    if not isinstance(name, str) or not name or _RESNET.match(name):
        raise ValueError(f"A model name is a non-empty string not of the resnet<depth> family; "
                         f"got {name!r}.")
    if name in _BUILDERS and not overwrite:
        raise ValueError(f"A model {name!r} is registered already; pass overwrite=True.")
    _BUILDERS[name] = builder
    if inputs is None:
        _INPUTS.pop(name, None)
    else:
        _INPUTS[name] = tuple(inputs)
    return builder


def unregister(name):
    """Removes model `name` from the registry."""
    _BUILDERS.pop(name, None)
    _INPUTS.pop(name, None)


# Token ids are integers to look up, not numbers to weigh: only the text
# models (with an embedding) read them.
register("cnn", cnn, inputs=("signals", "images"))
register("mlp", mlp, inputs=("features", "signals", "images"))
register("mnist1d_cnn", mnist1d_cnn, inputs=("signals",))
register("mnist1d_mlp", mnist1d_mlp, inputs=("features", "signals", "images"))
register("lstm", lstm, inputs=("tokens",))
register("bilstm", bilstm, inputs=("tokens",))


def inputs_read(name):
    """The input kinds model `name` reads, or `None` when it did not say.

    >>> keras_kd.models.inputs_read("lstm")
    ('tokens',)
    """
    check_name(name)
    return _RESNET_INPUTS if _RESNET.match(name) else _INPUTS.get(name)


def check_fits(name, info, role="model"):
    """Raises a ValueError naming `name`, its role and the dataset when the
    model does not read the dataset's kind of input (`info.kind`).

    >>> info = keras_kd.data.load("digits").info
    >>> keras_kd.models.check_fits("lstm", info, role="student_arch")
    Traceback (most recent call last):
    ...
    ValueError: student_arch='lstm' reads tokens, but dataset 'digits' holds images (input shape (8, 8, 1)); models that read images: ['cnn', 'mlp', 'mnist1d_mlp', 'resnet<6n+2>[_w<k>][_ln]'].
    """
    kinds = inputs_read(name)
    if kinds is None or info.kind in kinds:
        return
    fitting = sorted(model for model, read in _INPUTS.items() if info.kind in read)
    if info.kind in _RESNET_INPUTS:
        fitting.append("resnet<6n+2>[_w<k>][_ln]")
    raise ValueError(
        f"{role}={name!r} reads {' or '.join(kinds)}, but dataset {info.name!r} holds "
        f"{info.kind} (input shape {tuple(info.input_shape)}); models that read "
        f"{info.kind}: {fitting or 'none registered'}."
    )


def names():
    """The model names `get` accepts (`resnet<6n+2>` stands for any depth)."""
    return sorted(_BUILDERS) + [
        "resnet8", "resnet20", "resnet56", "resnet<6n+2>[_w<k>][_ln]"]


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
    check_fits(name, info)
    if info.vocabulary_size:
        kwargs.setdefault("vocabulary_size", info.vocabulary_size)
    return get(name, info.input_shape, info.num_classes, **kwargs)
