"""Training classifiers: optimizers, seeds, and the members of teacher ensembles."""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np

from keras_kd import data as data_lib
from keras_kd import export
from keras_kd import models

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


def derived_seed(seed, *keys):
    """A seed for one part of a run (a teacher member, say) derived from `seed`.

    Example:

    >>> derived_seed(0, "member", 1) == derived_seed(0, "member", 1)
    True
    """
    entropy = [seed] + [int(hashlib.sha256(str(k).encode()).hexdigest()[:8], 16) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """How to train one classifier with plain cross-entropy."""

    arch: str
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def validate(self):
        """Raises a ValueError naming the first bad field."""
        models.check_name(self.arch)
        for field in ("epochs", "batch_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive integer; got {value!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}."
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay!r}.")

    def optimizer_for(self, num_train, steps_per_epoch=None):
        """The optimizer, its learning rate decayed over the whole run.

        `steps_per_epoch` defaults to the batches in `num_train` examples.
        """
        if steps_per_epoch is None:
            steps_per_epoch = -(-num_train // self.batch_size)
        steps = self.epochs * steps_per_epoch
        return make_optimizer(
            self.optimizer, self.lr, steps, self.weight_decay or None
        )


def train_classifier(spec, data, seed, verbose="auto"):
    """Trains `spec.arch` on `data.train` with cross-entropy; returns the model.

    `seed` fixes the initialization and the order of the batches.
    """
    keras.utils.set_random_seed(seed)
    model = models.get(spec.arch, data.info.input_shape, data.info.num_classes)
    model.compile(
        optimizer=spec.optimizer_for(data.info.num_train),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    model.fit(
        data_lib.batched(data.train, spec.batch_size, shuffle=True, seed=seed),
        epochs=spec.epochs,
        verbose=verbose,
        shuffle=False,  # batched() already reshuffles every epoch
    )
    return model


def ensemble_members(spec, data, num_members, directory, verbose="auto"):
    """The paths of `num_members` trained members, training only what is missing.

    Members live in `<directory>/<arch>-<key>/member_<k>.keras`, where `key`
    hashes the dataset and every training setting, so changed settings never
    reuse stale members. Member `k` is trained with a seed derived from
    `(spec.seed, k)`: a 5-member ensemble extends a 3-member one. A member
    counts as finished once its `.keras` file and its `.json` record (test
    metrics and settings, written after the model) both exist.

    Returns:
        A list of dicts with `path`, `test_accuracy` and `reused`.
    """
    spec.validate()
    if not isinstance(num_members, int) or num_members < 1:
        raise ValueError(f"members must be a positive integer; got {num_members!r}.")
    settings = {"dataset": data.info.name, **dataclasses.asdict(spec)}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(directory, f"{spec.arch}-{key}")
    os.makedirs(folder, exist_ok=True)
    records = []
    for k in range(num_members):
        path = os.path.join(folder, f"member_{k}.keras")
        record_path = os.path.join(folder, f"member_{k}.json")
        if os.path.isfile(path) and os.path.isfile(record_path):
            with open(record_path) as f:
                record = json.load(f)
            records.append({"path": path, "test_accuracy": record["test_accuracy"], "reused": True})
            continue
        model = train_classifier(spec, data, derived_seed(spec.seed, "member", k), verbose)
        _, test_accuracy = model.evaluate(
            data_lib.batched(data.test, spec.batch_size), verbose=0
        )
        export.save_keras(model, path)
        record = {"settings": settings, "member": k, "test_accuracy": float(test_accuracy)}
        export.write_json(record, record_path)
        records.append({"path": path, "test_accuracy": float(test_accuracy), "reused": False})
    return records
