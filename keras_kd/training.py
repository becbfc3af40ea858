"""Training classifiers: optimizers, seeds, and the members of teacher ensembles."""

import dataclasses
import hashlib
import json
import os

import keras
import numpy as np

from keras_kd import callbacks as callbacks_lib
from keras_kd import data as data_lib
from keras_kd import distribute
from keras_kd import export
from keras_kd import models
from keras_kd.runtime import Runtime

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


@keras.saving.register_keras_serializable(package="keras_kd")
class Trainer(distribute.MultiWorkerFit, keras.Model):
    """Trains a network with Keras' own train step, under any strategy.

    A functional model cannot take the `MultiWorkerFit` mixin itself; this
    wrapper can, and its `network` is the trained model to save or export.
    """

    def __init__(self, network, **kwargs):
        kwargs.setdefault("name", f"{network.name}_trainer")
        super().__init__(**kwargs)
        self.network = network
        if network.built:
            self.built = True

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config["network"] = keras.saving.serialize_keras_object(self.network)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def resume_epoch(backup_dir, strategy):
    """The epoch a fit backed up to `backup_dir` resumes at, agreed by all workers.

    Workers whose backups disagree (one was lost, say) all start over, and
    their backups are removed, so no worker restores one.
    """
    if backup_dir is None:
        return 0
    epochs = callbacks_lib.BackupAndRestore.completed_epochs(backup_dir)
    if distribute.agreed(epochs, strategy) is None:
        callbacks_lib.remove_backups(backup_dir)
        return 0
    return epochs


def fit_callbacks(backup_dir, name):
    """The callbacks of a resumable fit: stop on a NaN loss, back up each epoch."""
    if backup_dir is None:
        return [callbacks_lib.StopOnNonFiniteLoss(f"Training {name} stopped.")]
    return [
        callbacks_lib.StopOnNonFiniteLoss(
            f"Training {name} stopped; its last good backup is in {backup_dir!r}."
        ),
        callbacks_lib.BackupAndRestore(backup_dir, delete_on_end=False),
    ]


def initial_model(spec, info, seed):
    """`spec.arch` for the dataset `info`, initialized as `train_classifier(..., seed)` starts it.

    Build it in the strategy scope the model is used in.
    """
    keras.utils.set_random_seed(seed)
    return models.get(spec.arch, info.input_shape, info.num_classes)


def member_seed(spec, member):
    """The seed of teacher member `member` trained by `ensemble_members`."""
    return derived_seed(spec.seed, "member", member)


def train_classifier(spec, data, seed, verbose="auto", runtime=None, backup_dir=None):
    """Trains `spec.arch` on `data.train` with cross-entropy; returns the model.

    `seed` fixes the initialization and every epoch's batches. Under
    `runtime` (default: one device, float32), the model is built in its
    strategy's scope. With `backup_dir`, each epoch is backed up there, and a
    rerun resumes after the last backed-up epoch with the batches the
    uninterrupted run would have seen.
    """
    runtime = runtime or Runtime()
    strategy = runtime.start()
    initial_epoch = resume_epoch(backup_dir, strategy)
    steps = data_lib.steps_per_epoch(
        data_lib.batched(data.train, spec.batch_size)
    )
    with strategy.scope():
        model = initial_model(spec, data.info, seed)
        trainer = Trainer(model)
        trainer.compile(
            optimizer=spec.optimizer_for(data.info.num_train, steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            **runtime.compile_settings(strategy),
        )
    batches = data_lib.batched(
        data.train, spec.batch_size, shuffle=True, seed=seed,
        epochs=spec.epochs, initial_epoch=initial_epoch,
    )
    trainer.fit(
        batches,
        epochs=spec.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps,
        callbacks=fit_callbacks(backup_dir, spec.arch),
        verbose=verbose,
        shuffle=False,  # every epoch is already shuffled by (seed, epoch)
    )
    return model


def ensemble_members(
    spec, data, num_members, directory, verbose="auto", runtime=None, backup_dir=None
):
    """The paths of `num_members` trained members, training only what is missing.

    Members live in `<directory>/<arch>-<key>/member_<k>.keras`, where `key`
    hashes the dataset and every training setting, so changed settings never
    reuse stale members. Member `k` is trained with a seed derived from
    `(spec.seed, k)`: a 5-member ensemble extends a 3-member one. A member
    counts as finished once its `.keras` file and its `.json` record (test
    metrics and settings, written after the model) both exist; each is
    written whole or not at all.

    With `backup_dir`, a member in training is backed up to
    `<backup_dir>/<arch>-<key>/member_<k>` at each epoch, and a rerun resumes
    it. Under a multi-worker `runtime`, workers reuse a member only if all of
    them find it, and only the chief writes into `directory`.

    Returns:
        A list of dicts with `path`, `test_accuracy` and `reused`.
    """
    spec.validate()
    if not isinstance(num_members, int) or num_members < 1:
        raise ValueError(f"members must be a positive integer; got {num_members!r}.")
    runtime = runtime or Runtime()
    strategy = runtime.start()
    settings = {"dataset": data.info.name, **dataclasses.asdict(spec)}
    if runtime.precision != "float32":
        settings["precision"] = runtime.precision
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(directory, f"{spec.arch}-{key}")
    paths = [os.path.join(folder, f"member_{k}.keras") for k in range(num_members)]
    finished = distribute.all_workers_agree(
        [os.path.isfile(path) and os.path.isfile(_record_path(path)) for path in paths],
        strategy,
    )
    write_folder = distribute.worker_dir(folder, strategy)
    records = []
    for k, (path, reuse) in enumerate(zip(paths, finished)):
        if reuse:
            with open(_record_path(path)) as f:
                record = json.load(f)
            records.append({"path": path, "test_accuracy": record["test_accuracy"], "reused": True})
            continue
        member_backup = None
        if backup_dir is not None:
            member_backup = distribute.worker_backup_dir(
                os.path.join(backup_dir, f"{spec.arch}-{key}", f"member_{k}"), strategy
            )
        model = train_classifier(
            spec, data, member_seed(spec, k), verbose, runtime, member_backup
        )
        test_accuracy = _accuracy(model, data_lib.batched(data.test, spec.batch_size))
        path = os.path.join(write_folder, os.path.basename(path))
        export.save_keras(model, path)
        record = {"settings": settings, "member": k, "test_accuracy": test_accuracy}
        export.write_json(record, _record_path(path))
        if member_backup is not None:
            callbacks_lib.remove_backups(member_backup)
        records.append({"path": path, "test_accuracy": test_accuracy, "reused": False})
    if backup_dir is not None:
        _remove_empty_folders(os.path.join(backup_dir, f"{spec.arch}-{key}"), stop=backup_dir)
    return records


def _remove_empty_folders(folder, stop):
    """Removes `folder`'s empty subfolders, then it and its parents up to `stop`, if empty."""
    if os.path.isdir(folder):
        for root, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
            if not os.listdir(root):
                os.rmdir(root)
    stop = os.path.abspath(stop)
    parent = os.path.abspath(folder)
    while len(parent) >= len(stop):
        if os.path.isdir(parent):
            if os.listdir(parent):
                return
            os.rmdir(parent)
        parent = os.path.dirname(parent)


def _record_path(member_path):
    return member_path[: -len(".keras")] + ".json"


def _accuracy(model, batches):
    metric = keras.metrics.SparseCategoricalAccuracy()
    for x, y in batches:
        metric.update_state(y, model(x, training=False))
    return float(metric.result())
