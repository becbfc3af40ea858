import glob

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd import evaluation


class _CountingTeacher(keras.Model):
    def __init__(self, model):
        super().__init__(name="counting_teacher")
        self.model = model
        self.calls = 0

    def call(self, x, training=False):
        self.calls += 1
        return self.model(x, training=training)


def test_fidelity_is_logged_each_epoch_as_evaluation_measures_it(digits, tmp_path):
    keras.utils.set_random_seed(0)
    teacher = _CountingTeacher(keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(32,)))
    student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(16,))
    distiller = keras_kd.Distiller(teacher=teacher, student=student)
    distiller.compile(keras.optimizers.Adam(1e-2))
    test = keras_kd.data.batched(digits.test, 100)
    history = distiller.fit(
        keras_kd.data.batched(digits.train, 64), epochs=3, verbose=0, shuffle=False,
        callbacks=[keras_kd.callbacks.FidelityCallback(test, "test", log_dir=str(tmp_path))],
    )
    logged = history.history
    assert len(logged["test_agreement"]) == 3
    assert logged["test_agreement"][-1] > logged["test_agreement"][0]
    assert teacher.calls <= 2 * 5  # the teacher's outputs were computed once (traced or eager)
    final = evaluation.fidelity_metrics(teacher.model, student, test)
    assert logged["test_agreement"][-1] == pytest.approx(final["agreement"], abs=1e-6)
    assert logged["test_predictive_kl"][-1] == pytest.approx(final["predictive_kl"], rel=1e-5)
    assert logged["test_student_accuracy"][-1] == pytest.approx(final["student_accuracy"], abs=1e-6)

    events = glob.glob(str(tmp_path / "test" / "events.out.tfevents.*"))
    assert events
    tags = {
        value.tag: tf.make_ndarray(value.tensor)
        for event in tf.compat.v1.train.summary_iterator(events[0])
        for value in event.summary.value
        if event.step == 2
    }
    assert tags["epoch_agreement"] == pytest.approx(final["agreement"], abs=1e-6)


def test_fidelity_of_a_plain_model_against_a_given_teacher(digits):
    teacher = keras_kd.models.get("mlp", (8, 8, 1), 10)
    student = keras_kd.models.get("mlp", (8, 8, 1), 10)
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.stack([x for x, _ in digits.test.take(50)])
    callback = keras_kd.callbacks.FidelityCallback([x], name="held_out", teacher=teacher, every=2)
    history = student.fit(x, np.zeros(50, "int32"), epochs=3, verbose=0, callbacks=[callback])
    # every=2: measured after epoch 2 and after the last; unlabeled, so no accuracy.
    assert sorted(history.history) == ["held_out_agreement", "held_out_predictive_kl", "loss"]
    assert len(history.history["held_out_agreement"]) == 2
    with pytest.raises(ValueError, match="needs a teacher"):
        student.fit(x, np.zeros(50, "int32"), epochs=1, verbose=0,
                    callbacks=[keras_kd.callbacks.FidelityCallback([x])])


def test_a_curve_measures_the_epochs_it_names_and_fills_the_others(rng):
    teacher = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    student = keras_kd.models.get("mlp", (4,), 3, hidden_units=(4,))
    distiller = keras_kd.Distiller(teacher=teacher, student=student)
    distiller.compile("adam")
    x = rng.random((32, 4)).astype("float32")
    y = rng.integers(0, 3, 32)
    epochs = keras_kd.callbacks.curve_epochs("log", 5)
    assert epochs == [1, 2, 4, 5]
    callback = keras_kd.callbacks.FidelityCallback([(x, y)], "held_out", epochs=epochs,
                                                   missing=float("nan"))
    history = distiller.fit(x, y, epochs=5, verbose=0, callbacks=[callback])
    measured = history.history["held_out_agreement"]
    assert [np.isnan(value) for value in measured] == [False, False, True, False, False]
    assert callback.seconds > 0
    with pytest.raises(ValueError, match=r"A fidelity curve is one of \['log', 'all', "
                       r"'every:K'\] \(K >= 1\); got 'every:0'"):
        keras_kd.callbacks.curve_epochs("every:0", 5)


def test_curve_epochs_must_be_counted_from_one():
    with pytest.raises(ValueError, match=r"epochs must be epoch numbers counted from 1; got "
                       r"\[0, 2\]"):
        keras_kd.callbacks.FidelityCallback([], epochs=[0, 2])
