"""TraceCache: a model trained on a kept trainer ends as one trained alone, bit for bit."""

import dataclasses

import keras
import numpy as np
import pytest

import keras_kd
from keras_kd import training
from keras_kd.trace_cache import TraceCache
from keras_kd.trace_cache import structure_key


def _student(seed, width=16, dropout=0.25):
    """A student with every kind of state a step touches: trainable weights,
    BatchNorm statistics and a dropout seed generator."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name=f"student_{seed}")


def _distiller(seed, teacher, lr=1e-2, **student):
    distiller = keras_kd.Distiller(teacher=teacher, student=_student(seed, **student),
                                   alpha=0.5, temperature=2.0)
    distiller.compile(optimizer=keras.optimizers.Adam(lr))
    return distiller


def _fit(distiller, data, cache=None):
    if cache is None:
        distiller.fit(data, epochs=2, verbose=0, shuffle=False)
        return distiller
    with cache.stand_in(distiller) as kept:
        kept.fit(data, epochs=2, verbose=0, shuffle=False)
    return distiller


@pytest.fixture(scope="module")
def teacher():
    keras.utils.set_random_seed(7)
    return keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(32,))


def _assert_same_state(a, b):
    for x, y in zip(a.variables + a.optimizer.variables, b.variables + b.optimizer.variables,
                    strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(x),
                                      keras.ops.convert_to_numpy(y), err_msg=x.path)


def test_a_distiller_trained_on_a_kept_step_ends_as_one_trained_alone(digits, teacher):
    data = keras_kd.data.batched(digits.train.take(96), 32)
    cache = TraceCache()
    _fit(_distiller(0, teacher), data, cache)
    cached = _fit(_distiller(1, teacher), data, cache)
    alone = _fit(_distiller(1, teacher), data)
    assert (cache.hits, cache.misses) == (1, 1)
    _assert_same_state(cached, alone)
    # A second fit on the kept step resumes from the model's own optimizer state.
    _fit(cached, data, cache)
    _fit(alone, data)
    _assert_same_state(cached, alone)


def test_a_classifier_trained_in_an_active_cache_ends_as_one_trained_alone(digits):
    spec = training.ClassifierSpec(arch="mlp", epochs=2, batch_size=128)
    small = dataclasses.replace(digits, train=digits.train.take(256))
    alone = training.train_classifier(spec, small, seed=3, verbose=0)
    cache = TraceCache()
    with cache.activated():
        training.train_classifier(spec, small, seed=2, verbose=0)
        cached = training.train_classifier(spec, small, seed=3, verbose=0)
    assert (cache.hits, cache.misses) == (1, 1)
    for a, b in zip(cached.get_weights(), alone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_structure_keys_ignore_names_and_tell_apart_what_the_step_depends_on(teacher):
    key = structure_key(_distiller(0, teacher))
    assert structure_key(_distiller(1, teacher)) == key  # other layer names, other values
    assert structure_key(_distiller(0, teacher, width=24)) != key
    assert structure_key(_distiller(0, teacher, dropout=0.5)) != key
    assert structure_key(_distiller(0, teacher, lr=1e-3)) != key


def test_models_of_one_structure_in_one_call_get_their_own_kept_copies(teacher):
    a, b = _student(0), _student(1)
    cache = TraceCache()
    with cache.stand_ins(a, None, b) as (kept_a, none, kept_b):
        assert none is None and kept_a is not kept_b
        assert kept_a is not a and kept_b is not b
        for model, kept in ((a, kept_a), (b, kept_b)):
            for x, y in zip(model.get_weights(), kept.get_weights(), strict=True):
                np.testing.assert_array_equal(x, y)
    with cache.stand_ins(_student(2)) as (again,):
        assert again is kept_a  # one kept copy per structure and position


def test_without_an_active_cache_or_under_a_strategy_the_model_trains_as_given(
        teacher, mirrored):
    distiller = _distiller(0, teacher)
    with keras_kd.trace_cache.stand_in(distiller) as kept:
        assert kept is distiller
    with mirrored.scope():
        mirrored_distiller = _distiller(0, teacher)
    with mirrored.scope(), TraceCache().stand_in(mirrored_distiller) as kept:
        assert kept is mirrored_distiller
    # Made in the strategy's scope, fit outside it (as train_classifier does).
    with TraceCache().stand_in(mirrored_distiller) as kept:
        assert kept is mirrored_distiller
    with TraceCache().stand_ins(mirrored_distiller.student) as (kept,):
        assert kept is mirrored_distiller.student


def test_capacity_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="capacity must be a positive integer; got 0"):
        TraceCache(capacity=0)
