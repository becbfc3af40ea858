"""One worker of the multi-worker tests: distills on digits, saves its weights.

    python tests/multi_worker_job.py OUT.npz [multi_worker|default] [distiller|gan|teacher]

Under `multi_worker`, `TF_CONFIG` names the cluster and this process's task.
Only the chief writes `OUT.npz`; every worker writes `OUT.npz.<task>` with its
own weights, so the test can compare them.
"""

import os
import sys

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fit_gan(keras_kd, strategy, train):
    with strategy.scope():
        model = keras_kd.gan.GAN(keras_kd.gan.make_generator((8, 8, 1), latent_dim=8),
                                 keras_kd.gan.make_discriminator((8, 8, 1)), seed=4)
        model.compile()
    batches = keras_kd.data.batched(train, 32, shuffle=True, seed=0, epochs=2)
    history = model.fit(batches, epochs=2, steps_per_epoch=8, verbose=0).history
    return model.generator.get_weights() + model.discriminator.get_weights(), history


def _fit_teacher(keras_kd, strategy, train):
    import keras

    with strategy.scope():
        network = keras_kd.models.get("resnet8", (8, 8, 1), 10)
        trainer = keras_kd.training.Trainer(network)
        trainer.compile(
            keras.optimizers.SGD(0.01),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    batches = keras_kd.data.batched(train, 32, shuffle=True, seed=0, epochs=2)
    history = trainer.fit(batches, epochs=2, steps_per_epoch=8, verbose=0).history
    return network.get_weights(), history


def main(out, strategy_name, model="distiller"):
    import keras

    import keras_kd

    strategy = keras_kd.distribute.get_strategy(strategy_name)
    data = keras_kd.data.load("digits")
    train = data.train.take(256)
    keras.utils.set_random_seed(1)
    if model != "distiller":
        fit = _fit_gan if model == "gan" else _fit_teacher
        weights, history = fit(keras_kd, strategy, train)
        _save(keras_kd, strategy, out, weights, history)
        return
    with strategy.scope():
        teacher = keras_kd.models.get("mlp", (8, 8, 1), 10)
        student = keras_kd.models.get("resnet8", (8, 8, 1), 10)
        distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.3, temperature=2.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    epochs = 2
    batches = keras_kd.data.distillation_set(
        train, 10, "crop_flip", batch_size=32, seed=3, epochs=epochs
    )
    history = distiller.fit(
        batches,
        epochs=epochs,
        steps_per_epoch=keras_kd.data.steps_per_epoch(batches, epochs),
        verbose=0,
    ).history
    _save(keras_kd, strategy, out, student.get_weights(), history)


def _save(keras_kd, strategy, out, weights, history):
    weights = {f"w{i}": w for i, w in enumerate(weights)}
    logs = {f"log_{name}": np.array(values) for name, values in history.items()}
    task = "single"
    if keras_kd.distribute.is_multi_worker(strategy):
        resolver = strategy.cluster_resolver
        task = f"{resolver.task_type}{resolver.task_id}"
    np.savez(
        f"{out}.{task}",
        replicas=strategy.num_replicas_in_sync,
        chief=keras_kd.distribute.is_chief(strategy),
        **weights,
        **logs,
    )
    if keras_kd.distribute.is_chief(strategy):
        np.savez(out, **weights)


if __name__ == "__main__":
    main(*sys.argv[1:])
