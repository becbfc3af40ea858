"""Training one classifier: optimizers, seeds, and a resumable fit under any strategy."""

import dataclasses
import hashlib

import keras
import numpy as np
import tensorflow as tf

from keras_kd import callbacks as callbacks_lib
from keras_kd import data as data_lib
from keras_kd import distribute
from keras_kd import models
from keras_kd import multi_worker
from keras_kd.config import Config
from keras_kd.config import setting
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


def training_augmentation(name, dataset_name=""):
    """The `keras_kd.data.Policy` a classifier is trained with, checked to keep
    the labels hard (no mixing stages, no synthetic examples).

    >>> training_augmentation("crop_flip", "tfds:cifar10").flip
    True
    """
    policy = data_lib.Policy.parse(name, flip=data_lib.default_flip(dataset_name or "digits"))
    if policy.mixes_labels or policy.uses_synthetic:
        raise ValueError(
            f"Training augmentation {name!r} must keep hard labels; mixing stages and "
            "gan belong to distillation policies. Expected stages such as identity, shift, "
            "crop_flip or noise."
        )
    return policy


def derived_seed(seed, *keys):
    """A seed for one part of a run (a teacher member, say) derived from `seed`.

    Example:

    >>> derived_seed(0, "member", 1) == derived_seed(0, "member", 1)
    True
    """
    entropy = [seed] + [int(hashlib.sha256(str(k).encode()).hexdigest()[:8], 16) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


@dataclasses.dataclass(frozen=True)
class ClassifierSpec(Config):
    """How to train one classifier with plain cross-entropy (validated when built).

    Its fields make up a teacher member's key, so they are only ever added
    with care: a new field changes every key.
    """

    arch: str = setting("resnet20", "Architecture.")
    epochs: int = setting(15, "Epochs.", lower=1)
    batch_size: int = setting(64, "Global batch size.", lower=1)
    optimizer: str = setting("adam", "Optimizer.", choices=OPTIMIZERS)
    lr: float = setting(2e-3, "Initial learning rate (cosine-decayed to 0).", above=0.0)
    weight_decay: float = setting(0.0, "Decoupled weight decay.", lower=0.0)
    seed: int = setting(0, "Seed of initializations and batch order.")
    augment: str = setting(
        "identity", "Augmentation of the training batches: policy stages that keep the "
        "labels, joined with '+' (identity, shift, crop_flip, noise, ...)."
    )

    def check(self):
        models.check_name(self.arch)
        training_augmentation(self.augment)

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
class Trainer(multi_worker.MultiWorkerFit, keras.Model):
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
    return models.for_data(spec.arch, info)


def member_seed(spec, member):
    """The seed of teacher member `member` trained by `ensemble_members`."""
    return derived_seed(spec.seed, "member", member)


def augmented(batches, policy, input_shape, seed, first_step=0, kind=None):
    """`(x, y)` batches with `policy`'s stages applied, each batch's draws fixed
    by `seed` and its step (counted from `first_step`, so a resumed fit sees
    the draws of an uninterrupted one); `kind` as `Policy.validate` takes it."""
    stages = policy.augmentation(input_shape, kind)
    if not stages:
        return batches
    base = tf.constant([seed % (2**63), 1], tf.int64)

    def apply(pair, step):
        batch = {"x": pair[0], "y": pair[1]}
        batch_seed = data_lib.epochs.sub_seed(base, step)
        for index, stage in enumerate(stages):
            batch = stage(batch, data_lib.epochs.sub_seed(batch_seed, index))
        return batch["x"], batch["y"]

    steps = tf.data.Dataset.counter(first_step)
    return tf.data.Dataset.zip(batches, steps).map(
        apply, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    ).apply(tf.data.experimental.assert_cardinality(batches.cardinality()))


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
    batches = augmented(batches, training_augmentation(spec.augment, data.info.name),
                        data.info.input_shape, seed, first_step=initial_epoch * steps,
                        kind=data.info.kind)
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
