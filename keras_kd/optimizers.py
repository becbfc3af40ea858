"""Optimizers by name, their learning rate cosine-decayed over a run."""

import keras
from keras import ops

OPTIMIZERS = ("adam", "adamw", "sgd")
# How weight decay is applied: Keras' decoupled `w -= lr * wd * w`, or PyTorch's
# coupled L2, `wd * w` added to the gradient before momentum (the paper's code).
WEIGHT_DECAY_TYPES = ("decoupled", "coupled")


class _CoupledWeightDecay:
    """Adds `l2 * w` to each gradient before the optimizer's own update:
    coupled L2 weight decay, as PyTorch's `weight_decay` applies it.

    At SGD momentum 0.9 it acts on the weights about ten times as strongly
    as Keras' decoupled `weight_decay` of the same value, and with Adam it
    is rescaled by the second-moment estimate like any gradient.
    """

    def __init__(self, *args, l2=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0; got {l2!r}.")
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        gradient = ops.cast(ops.convert_to_tensor(gradient), variable.dtype)
        decay = ops.multiply(ops.cast(self.l2, variable.dtype), variable)
        return super().update_step(ops.add(gradient, decay), variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="keras_kd")
class SGDWithL2(_CoupledWeightDecay, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with coupled L2 weight decay (PyTorch's SGD `weight_decay`).

    >>> optimizer = SGDWithL2(0.1, momentum=0.9, l2=1e-4)
    >>> optimizer.get_config()["l2"]
    0.0001
    """


@keras.saving.register_keras_serializable(package="keras_kd")
class AdamWithL2(_CoupledWeightDecay, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with coupled L2 weight decay (PyTorch's Adam `weight_decay`)."""


def make_optimizer(name, learning_rate, decay_steps=None, weight_decay=None,
                   weight_decay_type="decoupled"):
    """Builds an optimizer by name, with cosine decay over `decay_steps`.

    Args:
        name: `"adam"`, `"adamw"` or `"sgd"` (SGD with Nesterov momentum 0.9).
        learning_rate: the initial learning rate, > 0.
        decay_steps: if given, the rate decays to 0 along a cosine over this
            many steps; constant otherwise.
        weight_decay: the weight decay, or `None`.
        weight_decay_type: `"decoupled"` (Keras' optimizer `weight_decay`,
            any optimizer) or `"coupled"` (L2 added to the gradient, as
            PyTorch applies it; `sgd` and `adam`).

    Example:

    >>> type(make_optimizer("sgd", 0.1, 100, 1e-4, "coupled")).__name__
    'SGDWithL2'
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")
    if not learning_rate > 0:
        raise ValueError(f"The learning rate must be > 0; got {learning_rate!r}.")
    check_weight_decay_type(name, weight_decay_type)
    if decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    coupled = weight_decay_type == "coupled" and bool(weight_decay)
    if name == "sgd":
        if coupled:
            return SGDWithL2(learning_rate, momentum=0.9, nesterov=True, l2=weight_decay)
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    if coupled:
        return AdamWithL2(learning_rate, l2=weight_decay)
    optimizer_class = keras.optimizers.AdamW if name == "adamw" else keras.optimizers.Adam
    return optimizer_class(learning_rate, weight_decay=weight_decay)


def check_weight_decay_type(name, weight_decay_type):
    """Refuses an unknown weight-decay type, and coupled decay with AdamW
    (whose decay is decoupled by definition)."""
    if weight_decay_type not in WEIGHT_DECAY_TYPES:
        raise ValueError(f"Unknown weight_decay_type {weight_decay_type!r}; expected one "
                         f"of {WEIGHT_DECAY_TYPES}.")
    if name == "adamw" and weight_decay_type == "coupled":
        raise ValueError("optimizer='adamw' decays the weights decoupled by definition; "
                         "use optimizer='adam' with weight_decay_type='coupled' for "
                         "Adam with L2, or weight_decay_type='decoupled'.")
