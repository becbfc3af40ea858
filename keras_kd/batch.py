"""The batch formats a `Distiller` trains and evaluates on.

A batch is one of:

- `x`, `(x,)` or `(x, y)`;
- `(x, y, sample_weight)` with `[batch]` or `[batch, 1]` weights (Keras' own
  convention, what `fit(x, y, sample_weight=w)` yields);
- `(x, y, teacher_logits)` with `[batch, classes]` logits: precomputed teacher
  outputs, so the teacher is not called;
- `(x, y, teacher_logits, sample_weight)`;
- a dict with key `"x"` and any of `"y"`, `"teacher_logits"`,
  `"sample_weight"`, `"hard_label_mask"` (1 for labeled examples, 0 for
  unlabeled ones, which then only contribute to the soft loss) and
  `"temperature"` (a per-example distillation temperature).
"""

import dataclasses
from typing import Any

import tensorflow as tf
from keras import ops

BATCH_KEYS = (
    "x",
    "y",
    "teacher_logits",
    "sample_weight",
    "hard_label_mask",
    "temperature",
)


@dataclasses.dataclass(frozen=True)
class DistillationBatch:
    """One batch, with every optional part `None` when absent."""

    x: Any
    y: Any = None
    teacher_logits: Any = None
    sample_weight: Any = None
    hard_label_mask: Any = None
    temperature: Any = None


def is_batch_dict(data):
    """Whether `data` is a dict batch (keyed by `BATCH_KEYS`, with `"x"`)."""
    return isinstance(data, dict) and "x" in data and set(data) <= set(BATCH_KEYS)


def unpack(data):
    """Returns the `DistillationBatch` for any accepted batch format.

    Example:

    >>> batch = unpack((np.zeros((2, 3)), np.array([0, 1])))
    >>> batch.teacher_logits is None
    True
    """
    if isinstance(data, (list, tuple)) and len(data) == 1:
        data = data[0]
    if is_batch_dict(data):
        return DistillationBatch(**data)
    if isinstance(data, dict) and "x" in data:
        unknown = sorted(set(data) - set(BATCH_KEYS))
        raise ValueError(
            f"Unknown keys {unknown} in a distillation batch; expected keys "
            f"among {list(BATCH_KEYS)}."
        )
    if not isinstance(data, (list, tuple)):
        return DistillationBatch(x=data)
    if len(data) == 2:
        return DistillationBatch(x=data[0], y=data[1])
    if len(data) == 3:
        x, y, third = data
        if third is not None and len(third.shape) >= 2 and third.shape[-1] != 1:
            return DistillationBatch(x=x, y=y, teacher_logits=third)
        return DistillationBatch(x=x, y=y, sample_weight=third)
    if len(data) == 4:
        return DistillationBatch(
            x=data[0], y=data[1], teacher_logits=data[2], sample_weight=data[3]
        )
    raise ValueError(
        f"A distillation batch tuple has 1 to 4 elements (x, y, "
        f"teacher_logits, sample_weight); got {len(data)}."
    )


def labeled_weight(batch):
    """Per-example weights of the labeled examples (`None`: all, equally)."""
    weight = batch.sample_weight
    if batch.hard_label_mask is None:
        return weight
    mask = ops.cast(ops.reshape(batch.hard_label_mask, (-1,)), "float32")
    if weight is None:
        return mask
    return mask * ops.cast(ops.reshape(weight, (-1,)), "float32")


def global_batch_size(per_example_loss):
    """The number of examples in this step across all replicas and workers.

    Summing the local counts (instead of multiplying one replica's count by
    the replica count) keeps the average exact when the last batch splits
    unevenly across replicas.
    """
    local = tf.shape(per_example_loss)[0]
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return local
    return context.all_reduce(tf.distribute.ReduceOp.SUM, local)


def loss_extras(batch):
    """What a batch carries for a distillation loss beyond labels: its
    `hard_label_mask` and per-example `temperature`, each only when present."""
    return {name: getattr(batch, name) for name in ("hard_label_mask", "temperature")
            if getattr(batch, name) is not None}
