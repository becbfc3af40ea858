"""What a model is: its static input shape, class count, output layer and features.

These read any Keras model (and an ensemble, a model with `members`), not
only the registry's.
"""

import keras


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
    CKA) and its logits runs the teacher once per batch. For an ensemble
    (a model with `members` and its own `features_and_logits`, as
    `keras_kd.Ensemble` has), the members' features side by side and the
    ensemble's logits.

    Example:

    >>> model = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> [tuple(output.shape) for output in keras_kd.models.features_and_logits(model).outputs]
    [(None, 8), (None, 3)]
    """
    if getattr(model, "members", None):
        # An ensemble knows how its members' features and logits combine.
        return model.features_and_logits(name)
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
