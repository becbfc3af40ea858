"""Strategies by name, precision policies and the Runtime settings."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.runtime import Runtime


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test, and restores float32 after it."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def _distiller():
    keras.utils.set_random_seed(0)
    teacher = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(16,))
    return keras_kd.Distiller(teacher=teacher, student=student, alpha=0.3)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_distiller_trains_in_mixed_precision_with_float32_losses(policy, precision, digits):
    policy(precision)
    distiller = _distiller()
    distiller.compile(optimizer="adam")
    assert distiller.student.compute_dtype == precision.split("_")[1]
    scaled = isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (precision == "mixed_float16")
    x, y = next(iter(digits.train.batch(64)))
    assert distiller.student(x).dtype == precision.split("_")[1]
    history = distiller.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert all(np.isfinite(values).all() for values in history.values())
    assert history["loss"][1] < history["loss"][0]
    terms = distiller._per_example_terms(
        keras_kd.batch.unpack((x, y)), distiller.teacher(x), distiller.student(x))
    assert all(term.dtype == tf.float32 for term in terms)
    assert distiller.student.weights[0].dtype == "float32"  # master weights


@pytest.mark.slow
def test_gan_scales_both_losses_in_float16(policy):
    policy("mixed_float16")
    model = keras_kd.gan.GAN(keras_kd.gan.make_generator((8, 8, 1), latent_dim=8),
                             keras_kd.gan.make_discriminator((8, 8, 1)))
    model.compile()
    for optimizer in (model.generator_optimizer, model.discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.generator.layers[1].compute_dtype == "float16"
    # Spectral normalization's power iteration would overflow float16.
    assert {layer.compute_dtype for layer in model.discriminator.layers[1:]} == {"float32"}
    logs = model.fit(np.random.rand(32, 8, 8, 1).astype("float32"), batch_size=16, epochs=1,
                     verbose=0).history
    assert all(np.isfinite(values).all() for values in logs.values())
    config = model.get_compile_config()
    assert config["generator_optimizer"]["class_name"] == "Adam"  # saved unwrapped


@pytest.mark.parametrize("settings, message", [
    (dict(precision="float64"), "precision must be one of .*; got 'float64'"),
    (dict(strategy="parameter_server"), "strategy must be one of .*; got 'parameter_server'"),
    (dict(cpu_replicas=2), "with strategy 'default'"),
    (dict(strategy="mirrored", cpu_replicas=0), "cpu_replicas must be >= 1; got 0"),
])
def test_runtime_names_its_bad_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        Runtime(**settings)


def test_strategies_are_made_once_per_process(mirrored):
    assert keras_kd.distribute.get_strategy("mirrored", cpu_replicas=2) is mirrored
    assert mirrored.num_replicas_in_sync == 2
    assert keras_kd.distribute.is_chief(mirrored)
    assert not keras_kd.distribute.is_multi_worker(mirrored)
    assert keras_kd.distribute.worker_dir("out", mirrored) == "out"
    assert keras_kd.distribute.all_workers_agree([True, False], mirrored) == [True, False]
    with pytest.raises(ValueError, match="applies to the 'mirrored' strategy"):
        keras_kd.distribute.get_strategy("default", cpu_replicas=2)
    with pytest.raises(ValueError, match="Unknown strategy 'gpu'"):
        keras_kd.distribute.get_strategy("gpu")


def test_runtime_settings_reach_compile(mirrored):
    assert Runtime().compile_settings() == {"jit_compile": "auto", "steps_per_execution": 1}
    assert Runtime(jit_compile=True, steps_per_execution=4).compile_settings() == {
        "jit_compile": True, "steps_per_execution": 4}
    # XLA cannot compile a step spanning devices.
    assert Runtime(jit_compile=True).compile_settings(mirrored)["jit_compile"] is False
    assert Runtime().compile_settings(mirrored)["jit_compile"] is False
    assert Runtime().resolved_backup_dir("run") == "run/backup"
    assert Runtime(backup_dir="b").resolved_backup_dir("run") == "b"


def test_trainer_compiled_with_xla_trains(digits):
    x, y = next(iter(digits.train.batch(64)))
    trainer = keras_kd.training.Trainer(keras_kd.models.get("mlp", (8, 8, 1), 10))
    trainer.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    jit_compile=True)
    history = trainer.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert trainer.jit_compile and history["loss"][1] < history["loss"][0]


@pytest.mark.slow
def test_distiller_compiled_with_xla_trains(digits):
    x, y = next(iter(digits.train.batch(64)))
    distiller = _distiller()
    distiller.compile(optimizer="adam", jit_compile=True)
    history = distiller.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    assert distiller.jit_compile and history["loss"][1] < history["loss"][0]


def test_the_cluster_comes_from_tf_config_or_slurm(monkeypatch):
    from keras_kd import distribute

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:1"]}, '
                                    '"task": {"type": "worker", "index": 1}}')
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    resolver = distribute._cluster_resolver("auto")  # TF_CONFIG wins
    assert resolver.cluster_spec().as_dict() == {"worker": ["a:1", "b:1"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    monkeypatch.delenv("TF_CONFIG")
    if tf.config.list_physical_devices("GPU"):
        return  # the Slurm resolver itself would run; it needs a Slurm job
    with pytest.raises(ValueError, match="set TF_CONFIG for each task"):
        distribute._cluster_resolver("auto")
    with pytest.raises(ValueError, match="Unknown cluster 'k8s'"):
        distribute._cluster_resolver("k8s")
