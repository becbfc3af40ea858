import hashlib
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.data import SyntheticSource
from keras_kd.data import distillation_set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 10


def _split(rng, n=100, shape=(8, 8, 1)):
    x = rng.uniform(size=(n, *shape)).astype("float32")
    y = (np.arange(n) % CLASSES).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y))


def _mlp(seed, shape=(8, 8, 1)):
    keras.utils.set_random_seed(seed)
    return keras_kd.models.get("mlp", shape, CLASSES, hidden_units=(16,))


class CountingTeacher(keras.Model):
    """A teacher that counts the examples it is called on (in graphs too)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.examples = keras.Variable(0, dtype="int32", trainable=False, name="examples")

    def call(self, x, training=False):
        self.examples.assign_add(tf.shape(x)[0])
        return self.inner(x, training=training)


def _epochs(dataset, count=2):
    return [[{k: v.numpy() for k, v in batch.items()} for batch in dataset] for _ in range(count)]


def _digest(epochs):
    digest = hashlib.sha256()
    for epoch in epochs:
        for batch in epoch:
            for key in sorted(batch):
                digest.update(key.encode() + np.ascontiguousarray(batch[key]).tobytes())
    return digest.hexdigest()


_DIGEST_SCRIPT = """
import hashlib, keras, numpy as np, tensorflow as tf, keras_kd
keras.utils.set_random_seed(0)
data = keras_kd.data.load("digits")
source = keras_kd.data.SyntheticSource.from_inputs(np.full((4, 8, 8, 1), 0.5, "float32"))
dataset = keras_kd.data.distillation_set(
    data.train, 10, "crop_flip+rotation+cutmix+gan", batch_size=64, seed=7,
    synthetic=source, temperature=4.0)
digest = hashlib.sha256()
for _ in range(2):
    for batch in dataset:
        for key in sorted(batch):
            digest.update(key.encode() + np.ascontiguousarray(batch[key].numpy()).tobytes())
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_same_seed_gives_bitwise_identical_batches_across_processes():
    def digest():
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], cwd=ROOT, capture_output=True, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()[-1]

    assert digest() == digest()


def test_seed_fixes_batches_and_epochs_differ(rng, digits):
    def build(seed, policy="crop_flip+mixup"):
        keras.utils.set_random_seed(0)
        return distillation_set(digits.train, CLASSES, policy, batch_size=128, seed=seed)

    first, second = _epochs(build(5)), _epochs(build(5))
    assert _digest(first) == _digest(second)
    assert _digest(first[:1]) != _digest(first[1:])  # each pass is a new epoch
    assert _digest(_epochs(build(6))) != _digest(first)
    assert build(5).cardinality() == len(first[0]) == 11  # ceil(1347 / 128)


def test_identity_epochs_visit_every_example_once_in_a_new_order(rng):
    x = np.arange(50, dtype="float32").reshape(50, 1, 1, 1)
    split = tf.data.Dataset.from_tensor_slices((x, np.zeros(50, "int32")))
    first, second = _epochs(distillation_set(split, 2, "identity", batch_size=16, seed=0))
    orders = [np.concatenate([batch["x"].ravel() for batch in epoch]) for epoch in (first, second)]
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(50))
    assert not np.array_equal(orders[0], orders[1])
    assert [len(batch["x"]) for batch in first] == [16, 16, 16, 2]


def test_static_policy_caches_the_teacher_logits_of_each_input(rng):
    teacher = _mlp(1)
    dataset = distillation_set(_split(rng), CLASSES, "identity", batch_size=32, teacher=teacher)
    for batch in dataset:
        assert set(batch) == {"x", "y", "teacher_logits"}
        np.testing.assert_allclose(batch["teacher_logits"], teacher(batch["x"]), atol=1e-6)


@pytest.mark.parametrize(
    "policy, options, teacher_calls",
    [
        ("identity", {}, False),
        ("crop_flip+mixup", {"cached_views": 2}, False),
        ("crop_flip+mixup", {}, True),
        ("identity", {"cache": "off"}, True),
    ],
)
def test_a_cached_teacher_is_never_called_during_fit(rng, policy, options, teacher_calls):
    teacher = CountingTeacher(_mlp(1))
    dataset = distillation_set(
        _split(rng), CLASSES, policy, batch_size=32, seed=0, teacher=teacher, **options
    )
    teacher.examples.assign(0)
    distiller = keras_kd.Distiller(teacher=teacher, student=_mlp(2), alpha=0.5)
    distiller.compile(optimizer="sgd")
    distiller.fit(dataset, epochs=2, verbose=0, shuffle=False)
    assert (int(teacher.examples.numpy()) == 200) == teacher_calls
    assert int(teacher.examples.numpy()) in (0, 200)


@pytest.mark.parametrize(
    "policy, options, message",
    [
        ("crop_flip", {"cache": "memory"}, "Pass cached_views=N"),
        ("mixup", {"cache": "disk"}, "Cannot cache teacher outputs for the stochastic policy 'mixup'"),
        ("identity", {"cached_views": 2}, "policy 'identity' is static"),
        ("mixup", {"cache": "off", "cached_views": 2}, "needs a cache; got cache='off'"),
        ("mixup", {"cached_views": -1}, "non-negative integer; got -1"),
        ("identity", {"cache": "ram"}, "cache must be one of ['auto', 'memory', 'disk', 'off']"),
        ("identity", {"cache": "disk"}, "cache='disk' needs a cache_dir"),
        ("identity", {"batch_size": 0}, "batch_size must be a positive integer; got 0"),
        ("gan", {}, "pass synthetic=SyntheticSource"),
        ("grayscale", {}, "need RGB images"),
    ],
)
def test_bad_requests_are_refused_before_any_teacher_call(rng, policy, options, message):
    teacher = CountingTeacher(_mlp(1))
    options = {"batch_size": 16, "teacher": teacher, **options}
    with pytest.raises(ValueError) as error:
        distillation_set(_split(rng), CLASSES, policy, **options)
    assert message in str(error.value)
    assert int(teacher.examples.numpy()) == 0


def test_caching_without_a_teacher_is_refused(rng):
    with pytest.raises(ValueError, match="needs the teacher; got teacher=None"):
        distillation_set(_split(rng), CLASSES, "mixup", cached_views=2)
    # Without a teacher, "auto" simply leaves the teacher to the Distiller.
    batch = next(iter(distillation_set(_split(rng), CLASSES, "identity")))
    assert set(batch) == {"x", "y"}


@pytest.mark.slow
def test_cached_views_carry_logits_of_the_stored_inputs_in_memory_and_on_disk(rng, tmp_path):
    teacher, split = _mlp(1), _split(rng)

    def build(cache):
        return distillation_set(
            split, CLASSES, "crop_flip+cutmix", batch_size=32, seed=3, teacher=teacher,
            cache=cache, cached_views=3, cache_dir=str(tmp_path),
        )

    in_memory, on_disk = _epochs(build("memory")), _epochs(build("disk"))
    assert _digest(in_memory) == _digest(on_disk)
    assert _digest(in_memory[:1]) != _digest(in_memory[1:])
    for batch in in_memory[0]:
        assert set(batch) == {"x", "y", "teacher_logits"} and batch["y"].shape[1] == CLASSES
        np.testing.assert_allclose(batch["teacher_logits"], teacher(batch["x"]), atol=1e-5)
    assert [len(batch["x"]) for batch in in_memory[0]] == [32, 32, 32, 4]


def test_disk_cache_is_reused_and_rekeyed_when_teacher_or_data_change(rng, tmp_path):
    teacher, split = _mlp(1), _split(rng)

    def first_logits(teacher, split):
        dataset = distillation_set(
            split, CLASSES, "identity", batch_size=100, teacher=teacher, cache="disk",
            cache_dir=str(tmp_path),
        )
        batch = next(iter(dataset))
        order = np.argsort(batch["y"].numpy() * 1000 + batch["x"].numpy()[:, 0, 0, 0] * 100)
        return batch["teacher_logits"].numpy()[order], batch["x"].numpy()[order]

    logits, x = first_logits(teacher, split)
    (key,) = os.listdir(tmp_path)
    written = os.stat(tmp_path / key / "logits.npy").st_mtime_ns
    reused, _ = first_logits(teacher, split)
    np.testing.assert_array_equal(reused, logits)
    assert os.stat(tmp_path / key / "logits.npy").st_mtime_ns == written  # read, not rewritten

    # A cache changed or cut short since it was written is rebuilt, never read.
    cached = np.load(tmp_path / key / "logits.npy")
    np.save(tmp_path / key / "logits.npy", cached + 100.0)
    rebuilt, _ = first_logits(teacher, split)
    np.testing.assert_array_equal(rebuilt, logits)
    (tmp_path / key / "logits.npy").write_bytes(b"\x93NUMPY")
    np.testing.assert_array_equal(first_logits(teacher, split)[0], logits)
    os.remove(tmp_path / key / "logits.npy")
    np.testing.assert_array_equal(first_logits(teacher, split)[0], logits)

    new_teacher = _mlp(2)
    rekeyed, _ = first_logits(new_teacher, split)
    np.testing.assert_allclose(rekeyed, new_teacher(x), atol=1e-5)
    assert len(os.listdir(tmp_path)) == 2
    first_logits(teacher, _split(np.random.default_rng(99)))
    assert len(os.listdir(tmp_path)) == 3
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".staging")]


def test_synthetic_examples_join_each_batch_without_hard_labels(rng):
    source = SyntheticSource.from_inputs(np.full((3, 8, 8, 1), -1.0, "float32"))
    dataset = distillation_set(
        _split(rng), CLASSES, keras_kd.data.Policy.parse(
            "mixup+gan", synthetic_fraction=0.25, synthetic_temperature=2.0),
        batch_size=16, seed=0, synthetic=source, temperature=4.0,
    )
    assert dataset.cardinality() == 9  # 100 real examples, 12 per batch
    batches = _epochs(dataset, count=1)[0]
    for batch in batches:
        real = len(batch["x"]) - 4
        np.testing.assert_array_equal(batch["hard_label_mask"], [1.0] * real + [0.0] * 4)
        np.testing.assert_array_equal(batch["temperature"], [4.0] * real + [2.0] * 4)
        np.testing.assert_array_equal(batch["x"][real:], -1.0)
        assert (batch["x"][:real] >= 0).all()
        np.testing.assert_array_equal(batch["y"][real:], 0.0)
        np.testing.assert_allclose(batch["y"][:real].sum(axis=1), 1.0, rtol=1e-6)
    assert sum(len(batch["x"]) - 4 for batch in batches) == 100


def test_a_zero_synthetic_fraction_adds_no_synthetic_examples(rng):
    source = SyntheticSource.from_inputs(np.full((3, 8, 8, 1), -1.0, "float32"))
    policy = keras_kd.data.Policy.parse("gan", synthetic_fraction=0.0)
    batches = _epochs(distillation_set(_split(rng), CLASSES, policy, batch_size=32,
                                       synthetic=source), count=1)[0]
    assert [len(batch["x"]) for batch in batches] == [32, 32, 32, 4]
    assert all((batch["hard_label_mask"] == 1).all() and (batch["x"] >= 0).all()
               for batch in batches)


def test_synthetic_only_batches_and_source_checks(rng):
    source = SyntheticSource.from_generator(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(64), keras.layers.Reshape((8, 8, 1))])
    )
    dataset = distillation_set(
        _split(rng), CLASSES, keras_kd.data.Policy.parse("gan", synthetic_fraction=1.0),
        batch_size=16, synthetic=source,
    )
    batch = next(iter(dataset))
    assert dataset.cardinality() == 7 and batch["x"].shape == (16, 8, 8, 1)
    np.testing.assert_array_equal(batch["hard_label_mask"], np.zeros(16))
    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\), but the split's inputs have shape \(4, 4, 1\)"):
        distillation_set(_split(rng, shape=(4, 4, 1)), CLASSES, "gan", synthetic=source)
    with pytest.raises(ValueError, match="has no 'gan' or 'ood' stage"):
        distillation_set(_split(rng), CLASSES, "mixup", synthetic=source)
    with pytest.raises(ValueError, match="needs the distiller's temperature"):
        distillation_set(_split(rng), CLASSES, keras_kd.data.Policy.parse(
            "gan", synthetic_temperature=2.0), synthetic=source)


@pytest.mark.parametrize(
    "policy, options",
    [
        ("crop_flip+mixup", {}),
        ("cutmix+rotation", {"cached_views": 2}),
        ("crop_flip+perspective", {"cached_views": 1, "cache": "disk"}),
        ("mixup+gan", {"synthetic_temperature": 2.0}),
    ],
)
def test_teacher_sees_exactly_the_students_view(rng, tmp_path, policy, options):
    # Teacher and student are one function: any other view would show up as KL > 0.
    model, student = _mlp(1), _mlp(1)
    source = SyntheticSource.from_inputs(rng.uniform(size=(20, 8, 8, 1)).astype("float32"))
    synthetic_temperature = options.pop("synthetic_temperature", None)
    policy = keras_kd.data.Policy.parse(policy, synthetic_temperature=synthetic_temperature)
    dataset = distillation_set(
        _split(rng), CLASSES, policy, batch_size=32, seed=1, teacher=model,
        cache_dir=str(tmp_path), temperature=3.0,
        synthetic=source if policy.uses_synthetic else None, **options,
    )
    distiller = keras_kd.Distiller(teacher=model, student=student, alpha=0.0, temperature=3.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = distiller.fit(dataset, epochs=2, verbose=0, shuffle=False).history
    assert logs["agreement"] == [1.0, 1.0]
    np.testing.assert_allclose(logs["predictive_kl"], 0.0, atol=1e-6)
    np.testing.assert_allclose(logs["loss"], 0.0, atol=1e-5)
    fidelity = keras_kd.evaluation.fidelity_metrics(model, student, dataset)
    assert fidelity["agreement"] == 1.0


def _one_pass(rng, split):
    """One pass of a synthetic-mixing set, frozen: Keras opens iterators (and so
    draws epochs) differently under a strategy, and this compares the steps."""
    source = SyntheticSource.from_inputs(rng.uniform(size=(6, 8, 8, 1)).astype("float32"))
    policy = keras_kd.data.Policy.parse("crop_flip+gan", flip=False, synthetic_fraction=0.3,
                                        synthetic_temperature=1.5)
    dataset = distillation_set(split, CLASSES, policy, batch_size=20, seed=0,
                               synthetic=source, temperature=3.0)
    batches = list(dataset)
    examples = {key: tf.concat([batch[key] for batch in batches], 0) for key in batches[0]}
    return tf.data.Dataset.from_tensor_slices(examples).batch(20)


def _fit(strategy, dataset, initial_weights):
    with strategy.scope():
        teacher, student = _mlp(1), _mlp(2)
        student.set_weights(initial_weights)
        distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.5, temperature=3.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = distiller.fit(dataset, epochs=2, verbose=0, shuffle=False).history
    return student.get_weights(), logs


@pytest.mark.slow
def test_masked_batches_under_mirrored_strategy_match_one_device(rng, mirrored):
    # 14 real + 6 synthetic examples per batch; 50 examples leave a last batch
    # of 8 + 6, which splits over the replicas as 7 real and 1 real + 6 synthetic.
    dataset = _one_pass(rng, _split(rng, n=50))
    batch = next(iter(dataset))
    np.testing.assert_array_equal(batch["hard_label_mask"], [1.0] * 14 + [0.0] * 6)
    initial = _mlp(2).get_weights()
    single_weights, single_logs = _fit(tf.distribute.get_strategy(), dataset, initial)
    strategy = mirrored
    mirrored_weights, mirrored_logs = _fit(strategy, dataset, initial)
    for a, b in zip(single_weights, mirrored_weights):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    for name in ("loss", "student_accuracy", "agreement", "predictive_kl"):
        np.testing.assert_allclose(single_logs[name], mirrored_logs[name], rtol=1e-4, atol=1e-6)
    assert not np.allclose(single_weights[0], initial[0])


def test_split_of_unknown_length_is_refused(rng):
    split = _split(rng).filter(lambda x, y: y >= 0)
    with pytest.raises(ValueError, match="length is unknown"):
        distillation_set(split, CLASSES, "identity")
