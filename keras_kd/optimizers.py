"""Optimizers by name, their learning rate cosine-decayed over a run."""

import keras

OPTIMIZERS = ("adam", "adamw", "sgd")


def make_optimizer(name, learning_rate, decay_steps=None, weight_decay=None):
    """Builds an optimizer by name, with cosine decay over `decay_steps`.

    Args:
        name: `"adam"`, `"adamw"` or `"sgd"` (SGD with Nesterov momentum 0.9).
        learning_rate: the initial learning rate, > 0.
        decay_steps: if given, the rate decays to 0 along a cosine over this
            many steps; constant otherwise.
        weight_decay: decoupled weight decay (any optimizer), or `None`.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of {OPTIMIZERS}.")
    if not learning_rate > 0:
        raise ValueError(f"The learning rate must be > 0; got {learning_rate!r}.")
    if decay_steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    if name == "sgd":
        return keras.optimizers.SGD(
            learning_rate, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    optimizer_class = keras.optimizers.AdamW if name == "adamw" else keras.optimizers.Adam
    return optimizer_class(learning_rate, weight_decay=weight_decay)
