"""Training one classifier: its settings, and a resumable fit under any strategy."""

import dataclasses

import keras
import tensorflow as tf

from keras_kd import backup
from keras_kd import callbacks as callbacks_lib
from keras_kd import data as data_lib
from keras_kd import models
from keras_kd import multi_worker
from keras_kd import optimizers
from keras_kd import seeds
from keras_kd import trace_cache
from keras_kd.config import Config
from keras_kd.config import like
from keras_kd.config import setting
from keras_kd.optimizers import OPTIMIZERS
from keras_kd.runtime import Runtime

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


@dataclasses.dataclass(frozen=True)
class Training(Config):
    """Training settings the student and the teacher members share."""

    batch_size: int = setting(64, "Global batch size.", lower=1)
    optimizer: str = setting("adam", "Optimizer.", choices=OPTIMIZERS)
    lr: float = setting(2e-3, "Initial learning rate (cosine-decayed to 0).", above=0.0)
    weight_decay: float = setting(0.0, "Weight decay (see --weight_decay_type).", lower=0.0)
    weight_decay_type: str = setting(
        "decoupled", "How --weight_decay acts: decoupled (Keras' optimizer weight_decay, "
        "w -= lr * wd * w) or coupled (L2 added to the gradient before momentum, as "
        "PyTorch's SGD and the paper's code apply it: about 10x stronger at momentum 0.9).",
        choices=optimizers.WEIGHT_DECAY_TYPES,
    )
    seed: int = setting(0, "Seed of initializations, batch order and augmentation.",
                        lower=0, upper=2**31 - 1)

    def check(self):
        optimizers.check_weight_decay_type(self.optimizer, self.weight_decay_type)


@dataclasses.dataclass(frozen=True)
class ClassifierSpec(Config):
    """How to train one classifier with plain cross-entropy (validated when built).

    The shared settings are `Training`'s own declarations. Its fields make up
    a teacher member's key, so they are only ever added with care: a new
    field changes every key.
    """

    arch: str = setting("resnet20", "Architecture.")
    epochs: int = setting(15, "Epochs.", lower=1)
    batch_size: int = like(Training, "batch_size")
    optimizer: str = like(Training, "optimizer")
    lr: float = like(Training, "lr")
    weight_decay: float = like(Training, "weight_decay")
    weight_decay_type: str = like(Training, "weight_decay_type")
    seed: int = like(Training, "seed")
    augment: str = setting(
        "identity", "Augmentation of the training batches: policy stages that keep the "
        "labels, joined with '+' (identity, shift, crop_flip, noise, ...)."
    )

    def check(self):
        models.check_name(self.arch)
        training_augmentation(self.augment)
        optimizers.check_weight_decay_type(self.optimizer, self.weight_decay_type)

    def optimizer_for(self, num_train, steps_per_epoch=None):
        """The optimizer, its learning rate decayed over the whole run.

        `steps_per_epoch` defaults to the batches in `num_train` examples.
        """
        if steps_per_epoch is None:
            steps_per_epoch = -(-num_train // self.batch_size)
        steps = self.epochs * steps_per_epoch
        return optimizers.make_optimizer(
            self.optimizer, self.lr, steps, self.weight_decay or None, self.weight_decay_type
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


def fit_callbacks(backup_dir, name, every_steps=0):
    """The callbacks of a resumable fit: stop on a NaN loss, back up at epoch
    ends (each, or once `every_steps` steps have passed: see `BackupAndRestore`)."""
    if backup_dir is None:
        return [callbacks_lib.StopOnNonFiniteLoss(f"Training {name} stopped.")]
    return [
        callbacks_lib.StopOnNonFiniteLoss(f"Training {name} stopped.", backup_dir=backup_dir),
        backup.BackupAndRestore(backup_dir, delete_on_end=False, every_steps=every_steps),
    ]


def initial_model(spec, info, seed):
    """`spec.arch` for the dataset `info`, initialized as `train_classifier(..., seed)` starts it.

    Build it in the strategy scope the model is used in.
    """
    keras.utils.set_random_seed(seed)
    return models.for_data(spec.arch, info)


def member_seed(spec, member):
    """The seed of teacher member `member` trained by `ensemble_members`."""
    return seeds.derived_seed(spec.seed, "member", member)


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
        batch_seed = seeds.fold_in(base, step)
        for index, stage in enumerate(stages):
            batch = stage(batch, seeds.fold_in(batch_seed, index))
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
    initial_epoch = backup.resume_epoch(backup_dir, strategy)
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
    # In a sweep, a step traced for an earlier model of this structure trains this one.
    with trace_cache.stand_in(trainer) as kept:
        kept.fit(
            batches,
            epochs=spec.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            callbacks=fit_callbacks(backup_dir, spec.arch, runtime.backup_every_steps),
            verbose=verbose,
            shuffle=False,  # every epoch is already shuffled by (seed, epoch)
        )
    return model
