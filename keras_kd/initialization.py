"""Where a student starts: random, or interpolated toward a teacher's weights.

The study's optimization experiment initializes the student at
`lambda * teacher_weights + (1 - lambda) * random_init` and asks how close
to the teacher distillation then gets: with `lambda` near 1 the student
starts next to a solution that matches exactly.
"""

import dataclasses

import keras

INIT_SOURCES = ("teacher", "teacher_init")


@dataclasses.dataclass(frozen=True)
class StudentInit:
    """How the student's weights start.

    Attributes:
        interpolation: `None` for a random initialization, or `lambda` in
            [0, 1] for `lambda * target + (1 - lambda) * random`.
        source: the target: `"teacher"` (its trained weights) or
            `"teacher_init"` (the weights it started training from).

    Example:

    >>> StudentInit.parse("interpolate:0.75")
    StudentInit(interpolation=0.75, source='teacher')
    >>> StudentInit.parse("random").interpolation is None
    True
    """

    interpolation: float | None = None
    source: str = "teacher"

    @classmethod
    def parse(cls, text, source="teacher"):
        """Reads `"random"` or `"interpolate:LAMBDA"`; raises a ValueError naming bad text."""
        if source not in INIT_SOURCES:
            raise ValueError(
                f"Unknown student_init_from {source!r}; expected one of {INIT_SOURCES}."
            )
        if text == "random":
            return cls(None, source)
        kind, _, value = str(text).partition(":")
        try:
            interpolation = float(value)
        except ValueError:
            interpolation = None
        if kind != "interpolate" or interpolation is None or not 0.0 <= interpolation <= 1.0:
            raise ValueError(
                f"Unknown student_init {text!r}; expected 'random' or "
                "'interpolate:LAMBDA' with LAMBDA in [0, 1] (e.g. interpolate:0.9)."
            )
        return cls(interpolation, source)


def interpolate_weights(model, target, interpolation):
    """Sets `model`'s weights to `interpolation * target + (1 - interpolation) * model`.

    Every weight is interpolated, BatchNormalization's moving statistics
    included; re-estimate those with `reestimate_batch_norm`, since a mean
    of two networks' statistics is not the statistics of their mean.

    Args:
        model: the model to change, e.g. a freshly initialized student.
        target: a model of the same architecture (same weight shapes, in
            the same order).
        interpolation: a float in [0, 1].

    Example:

    >>> a = keras_kd.models.get("mlp", (4,), 3)
    >>> b = keras_kd.models.get("mlp", (4,), 3)
    >>> expected = 0.25 * b.weights[0].numpy() + 0.75 * a.weights[0].numpy()
    >>> interpolate_weights(a, b, 0.25)
    >>> bool(np.allclose(a.weights[0].numpy(), expected))
    True
    """
    if not 0.0 <= float(interpolation) <= 1.0:
        raise ValueError(f"interpolation must be in [0, 1]; got {interpolation!r}.")
    mine, theirs = model.weights, target.weights
    shapes = [tuple(w.shape) for w in mine]
    target_shapes = [tuple(w.shape) for w in theirs]
    if shapes != target_shapes:
        raise ValueError(
            f"Cannot interpolate {model.name!r} toward {target.name!r}: their weights "
            f"differ ({len(shapes)} weights vs {len(target_shapes)}; first shapes that "
            f"differ: {_first_difference(shapes, target_shapes)}). The student must have "
            "the teacher's architecture."
        )
    for variable, target_variable in zip(mine, theirs):
        variable.assign(
            interpolation * target_variable.value + (1.0 - interpolation) * variable.value
        )


def _first_difference(shapes, target_shapes):
    for mine, theirs in zip(shapes, target_shapes):
        if mine != theirs:
            return f"{mine} vs {theirs}"
    return "one has more weights"


def reestimate_batch_norm(model, batches):
    """Recomputes every BatchNormalization layer's moving statistics on `batches`.

    The moving mean and variance become the average of the per-batch
    statistics over all of `batches` (as `torch.optim.swa_utils.update_bn`
    does), in one pass in training mode; no other weight changes.

    Args:
        model: a Keras model.
        batches: batches of inputs, or `(x, ...)` tuples (labels are ignored).

    Returns:
        The number of BatchNormalization layers updated.
    """
    layers = [
        layer for layer in _all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        count = 0
        for data in batches:
            x = data[0] if isinstance(data, (tuple, list)) else data
            # momentum k / (k + 1) makes the moving value the mean of k + 1 batches.
            for layer in layers:
                layer.momentum = count / (count + 1.0)
            model(x, training=True)
            count += 1
        if count == 0:
            raise ValueError("reestimate_batch_norm got no batches.")
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
