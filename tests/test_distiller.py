import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from tests import reference

NUM_CLASSES = 5


def _dense_model(seed, hidden=8, classes=NUM_CLASSES, l2=0.0, name=None):
    initializer = keras.initializers.GlorotUniform(seed=seed)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(hidden, activation="tanh", kernel_initializer=initializer,
                               kernel_regularizer=regularizer),
            keras.layers.Dense(classes, kernel_initializer=initializer),
        ],
        name=name,
    )


def _data(rng, n=32, classes=NUM_CLASSES):
    x = rng.normal(size=(n, 4)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int32")
    return x, y


def _hand_loss(student_weights, x, y, teacher_logits, alpha, temperature, l2):
    """The documented loss, written out with raw TF ops (not keras_kd's)."""
    w1, b1, w2, b2 = student_weights
    logits = tf.matmul(tf.tanh(tf.matmul(x, w1) + b1), w2) + b2
    log_q = tf.nn.log_softmax(logits)
    ce = -tf.gather(log_q, y, batch_dims=1)
    log_pt = tf.nn.log_softmax(teacher_logits / temperature)
    log_qt = tf.nn.log_softmax(logits / temperature)
    kl = tf.reduce_sum(tf.exp(log_pt) * (log_pt - log_qt), axis=-1)
    per_example = alpha * ce + (1 - alpha) * temperature**2 * kl
    return tf.reduce_mean(per_example) + l2 * tf.reduce_sum(tf.square(w1))


def test_train_step_applies_the_hand_computed_loss_and_gradient(rng):
    x, y = _data(rng)
    teacher, student = _dense_model(1), _dense_model(2, l2=0.01)
    alpha, temperature, lr = 0.3, 2.5, 0.1
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=alpha, temperature=temperature)
    distiller.compile(optimizer=keras.optimizers.SGD(lr))
    teacher_logits = tf.constant(teacher.predict(x, verbose=0))
    before = [tf.Variable(w) for w in student.get_weights()]
    with tf.GradientTape() as tape:
        expected_loss = _hand_loss(before, x, y, teacher_logits, alpha, temperature, 0.01)
    gradients = tape.gradient(expected_loss, before)

    logs = distiller.train_on_batch(x, y, return_dict=True)

    assert logs["loss"] == pytest.approx(float(expected_loss), rel=1e-5)
    for after, start, gradient in zip(student.get_weights(), before, gradients):
        np.testing.assert_allclose(after, start.numpy() - lr * gradient.numpy(), atol=1e-6)


def test_labels_of_shape_batch_by_one_mean_what_batch_labels_mean(rng):
    # keras.datasets returns [batch, 1] labels, and Keras' sparse losses take them;
    # they were read as one-column label distributions (hard loss 110.9, not 2.49).
    x, y = _data(rng, n=48)
    results = {}
    for name, labels in (("flat", y), ("column", y[:, None])):
        keras.utils.set_random_seed(5)
        teacher, student = _dense_model(1), _dense_model(2)
        distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=1.0)
        distiller.compile(optimizer="sgd")
        history = distiller.fit(x, labels, batch_size=16, epochs=2, shuffle=False,
                                verbose=0).history
        logs = distiller.evaluate(x, labels, batch_size=16, return_dict=True, verbose=0)
        report = keras_kd.evaluation.fidelity_metrics(
            teacher, student, [(x, labels)], distillation=distiller)
        results[name] = (history, logs, report, student.get_weights())
    flat, column = results["flat"], results["column"]
    assert column[0] == flat[0] and column[1] == flat[1] and column[2] == flat[2]
    for a, b in zip(column[3], flat[3]):
        np.testing.assert_array_equal(a, b)
    s = distiller.student.predict(x, verbose=0)  # both runs ended with these weights
    assert flat[1]["student_accuracy"] == pytest.approx(np.mean(s.argmax(-1) == y))
    assert flat[1]["hard_loss"] == pytest.approx(reference.cross_entropy(y, s).mean(), rel=1e-5)


def test_evaluate_reports_true_metric_values(rng):
    x, y = _data(rng, n=40)
    teacher, student = _dense_model(1), _dense_model(2)
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.5, temperature=3.0)
    distiller.compile()
    logs = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    expected_loss = 0.5 * reference.cross_entropy(y, s) + 0.5 * 9.0 * reference.kl(t, s, 3.0)
    assert logs["loss"] == pytest.approx(expected_loss.mean(), rel=1e-5)
    assert logs["student_accuracy"] == pytest.approx(np.mean(s.argmax(-1) == y))
    assert logs["agreement"] == pytest.approx(np.mean(s.argmax(-1) == t.argmax(-1)))
    assert logs["predictive_kl"] == pytest.approx(reference.kl(t, s).mean(), rel=1e-5)
    assert logs["student_ece"] == pytest.approx(reference.ece(y, s, 15), rel=1e-4)


def test_teacher_is_never_trained(digits):
    teacher = keras_kd.models.get("resnet8", (8, 8, 1), 10)  # BatchNorm statistics too
    student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(16,))
    before = [w.copy() for w in teacher.get_weights()]
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.5)
    distiller.compile(optimizer="adam")
    distiller.fit(keras_kd.data.batched(digits.train.take(128), 32), epochs=2, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Adam keeps 2 slots per trained weight (+ iterations, learning rate): none for the teacher.
    assert len(distiller.optimizer.variables) == 2 + 2 * len(student.trainable_weights)


def test_precomputed_teacher_logits_replace_the_teacher(rng):
    x, y = _data(rng)
    used_teacher, ignored_teacher = _dense_model(1), _dense_model(3)
    logits = used_teacher.predict(x, verbose=0)
    runs = []
    for teacher, batches in (
        (used_teacher, tf.data.Dataset.from_tensor_slices((x, y)).batch(8)),
        (ignored_teacher, tf.data.Dataset.from_tensor_slices((x, y, logits)).batch(8)),
    ):
        student = _dense_model(2)
        distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.2)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        history = distiller.fit(batches, epochs=2, verbose=0).history
        runs.append((student.get_weights(), history))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert runs[0][1]["agreement"] == pytest.approx(runs[1][1]["agreement"])


def test_dict_batches_carry_masks_temperatures_and_weights(rng):
    x, y = _data(rng, n=16)
    teacher, student = _dense_model(1), _dense_model(2)
    mask = np.array([1, 0] * 8, "float32")
    temperature = rng.uniform(1, 5, size=16).astype("float32")
    weight = rng.uniform(size=16).astype("float32")
    labels = np.where(mask > 0, y, -1).astype("int32")
    batch = {"x": x, "y": labels, "hard_label_mask": mask, "temperature": temperature,
             "sample_weight": weight}
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.4)
    distiller.compile()
    logs = distiller.evaluate(tf.data.Dataset.from_tensors(batch), return_dict=True, verbose=0)
    t, s = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    hard = np.where(mask > 0, reference.cross_entropy(np.maximum(labels, 0), s), 0.0)
    per_example = weight * (0.4 * hard + 0.6 * temperature**2 * reference.kl(t, s, temperature))
    assert logs["loss"] == pytest.approx(per_example.mean(), rel=1e-5)
    labeled = mask > 0
    expected_accuracy = np.average(s.argmax(-1)[labeled] == y[labeled], weights=weight[labeled])
    assert logs["student_accuracy"] == pytest.approx(expected_accuracy, rel=1e-5)


def _mirrored_run(strategy, x, y, initial_weights):
    with strategy.scope():
        teacher = keras_kd.Ensemble([_image_mlp(seed) for seed in (10, 11)])
        student = keras_kd.models.get("resnet8", (8, 8, 1), 10)
        student.set_weights(initial_weights)
        distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.3, temperature=2.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    history = distiller.fit(batches, epochs=2, verbose=0).history
    return student.get_weights(), history


def _image_mlp(seed):
    keras.utils.set_random_seed(seed)
    return keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(32,))


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device(digits, mirrored):
    # 69 examples: the last batch (5) splits unevenly over the 2 replicas.
    # The logged values equal one device's: true means, not scaled by the replica count.
    x, y = next(iter(digits.train.batch(69)))
    keras.utils.set_random_seed(0)
    initial = keras_kd.models.get("resnet8", (8, 8, 1), 10).get_weights()
    single_weights, single_logs = _mirrored_run(tf.distribute.get_strategy(), x, y, initial)
    strategy = mirrored
    assert strategy.num_replicas_in_sync == 2
    mirrored_weights, mirrored_logs = _mirrored_run(strategy, x, y, initial)
    for a, b in zip(single_weights, mirrored_weights):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
    for name in ("loss", "hard_loss", "soft_loss", "student_accuracy", "agreement", "predictive_kl",
                 "student_ece"):
        np.testing.assert_allclose(single_logs[name], mirrored_logs[name], rtol=1e-4, atol=1e-6)


def test_mirrored_fit_starts_on_a_batch_that_splits_unevenly(digits, mirrored):
    # Keras' own symbolic build averages the first batch across replicas and
    # fails when it splits 3 + 2; the Distiller builds from the element spec.
    x, y = next(iter(digits.train.batch(37)))
    with mirrored.scope():
        distiller = keras_kd.Distiller(teacher=_image_mlp(1), student=_image_mlp(0), alpha=0.5)
        distiller.compile(optimizer="sgd")
    batches = tf.data.Dataset.from_tensor_slices((x, y)).skip(32).concatenate(
        tf.data.Dataset.from_tensor_slices((x, y)).take(32)).batch(5)
    history = distiller.fit(batches, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_distiller_is_built_with_its_student_and_predicts(rng):
    x, _ = _data(rng, n=4)
    student = _dense_model(2)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=student)
    assert distiller.built
    np.testing.assert_allclose(distiller.predict(x, verbose=0), student.predict(x, verbose=0))


@pytest.mark.parametrize("after_fit", [False, True])
def test_keras_file_round_trip(tmp_path, rng, after_fit):
    x, y = _data(rng)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2), alpha=0.25, temperature=3.0)
    distiller.compile(optimizer="adam")
    if after_fit:
        distiller.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = str(tmp_path / "distiller.keras")
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_kd.Distiller)
    assert (loaded.alpha, loaded.temperature) == (0.25, 3.0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), distiller.predict(x, verbose=0))
    np.testing.assert_allclose(loaded.teacher.predict(x, verbose=0), distiller.teacher.predict(x, verbose=0))
    assert loaded.optimizer is not None
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0)  # ready to train on


@pytest.mark.slow
@pytest.mark.parametrize("after_fit", [False, True])
def test_saved_model_export_loads_with_tensorflow_alone(tmp_path, rng, after_fit):
    x, y = _data(rng, n=6)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    distiller.compile(optimizer="adam")
    if after_fit:
        distiller.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "exported")
    distiller.export(path, verbose=False)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, tensorflow as tf; "
        "m = tf.saved_model.load(sys.argv[1]); "
        "np.save(sys.argv[3], m.serve(np.load(sys.argv[2])).numpy()); "
        "assert not any(name.startswith('keras_kd') for name in sys.modules)"
    )
    out = tmp_path / "out.npy"
    subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "x.npy"), str(out)],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    np.testing.assert_allclose(np.load(out), distiller.predict(x, verbose=0), atol=1e-6)


def test_export_writes_the_student_only(tmp_path):
    teacher = keras_kd.models.get("resnet20", (8, 8, 1), 10)
    student = _image_mlp(1)
    keras_kd.Distiller(teacher=teacher, student=student).export(str(tmp_path / "s"), verbose=False)
    variables = tf.saved_model.load(str(tmp_path / "s")).variables
    assert sum(int(np.prod(v.shape)) for v in variables) == student.count_params()


def test_config_round_trip():
    distiller = keras_kd.Distiller(teacher=_dense_model(1, name="t"), student=_dense_model(2, name="s"),
                                   alpha=0.7, temperature=1.5)
    clone = keras_kd.Distiller.from_config(distiller.get_config())
    assert (clone.alpha, clone.temperature) == (0.7, 1.5)
    assert clone.student.name == "s" and clone.teacher.name == "t"
    assert clone.get_config()["student"] == distiller.get_config()["student"]


def test_compiled_metrics_are_reported(rng):
    x, y = _data(rng)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    distiller.compile(metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")])
    logs = distiller.evaluate(x, y, return_dict=True, verbose=0)
    s = distiller.predict(x, verbose=0)
    top2 = np.argsort(-s, axis=-1)[:, :2]
    assert logs["top2"] == pytest.approx(np.mean([t in row for t, row in zip(y, top2)]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -0.1}, r"alpha must be in \[0, 1\]; got alpha=-0.1"),
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\]; got alpha=1.5"),
        ({"temperature": 0.0}, r"temperature must be > 0 and finite; got temperature=0.0"),
        ({"temperature": -2}, r"temperature must be > 0 and finite; got temperature=-2"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2), **kwargs)


def test_class_count_mismatch_names_both_counts():
    with pytest.raises(ValueError, match="student predicts 5 classes but the teacher predicts 7"):
        keras_kd.Distiller(teacher=_dense_model(1, classes=7), student=_dense_model(2))


def test_ensemble_teacher_class_count_is_checked_at_construction():
    teacher = keras_kd.Ensemble([_dense_model(1, classes=7), _dense_model(3, classes=7)])
    with pytest.raises(ValueError, match="student predicts 5 classes but the teacher predicts 7"):
        keras_kd.Distiller(teacher=teacher, student=_dense_model(2))


def test_precomputed_logits_class_count_is_checked_before_training(rng):
    x, y = _data(rng)
    student = _dense_model(2)
    before = student.get_weights()
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=student)
    distiller.compile()
    with pytest.raises(ValueError, match="predicts 5 classes but the batch's teacher_logits predicts 3"):
        distiller.fit(tf.data.Dataset.from_tensor_slices((x, y, np.zeros((32, 3), "float32"))).batch(8),
                      verbose=0)
    for a, b in zip(before, student.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad_label", [5, -1])
def test_out_of_range_labels_fail_at_the_first_batch(rng, bad_label):
    x, y = _data(rng)
    y[0] = bad_label
    student = _dense_model(2)
    before = student.get_weights()
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=student, alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be integers in \[0, 5\)"):
        distiller.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    for a, b in zip(before, student.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_evaluate_checks_labels_too(rng):
    x, y = _data(rng)
    y[3] = 9
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    distiller.compile()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be integers in \[0, 5\)"):
        distiller.evaluate(x, y, verbose=0)


def test_hard_loss_without_labels_is_refused(rng):
    x, _ = _data(rng)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2), alpha=0.5)
    distiller.compile()
    with pytest.raises(ValueError, match="alpha=0.5 weights a hard-label loss, but the batch has no labels"):
        distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), verbose=0)


def test_pure_distillation_trains_without_labels(rng):
    x, _ = _data(rng)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2), alpha=0.0)
    distiller.compile(optimizer="adam")
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert "student_accuracy" in history  # reported, though nothing labeled it


def test_compile_refuses_a_loss():
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    with pytest.raises(ValueError, match=r"loss is given when it is built, Distiller\(..., loss=...\)"):
        distiller.compile(optimizer="adam", loss="mse")


def test_models_that_cannot_be_distilled_are_refused_at_construction():
    teacher = keras_kd.models.get("mlp", (8, 8, 1), 10)
    other_inputs = keras_kd.models.get("mlp", (28, 28, 1), 10)
    with pytest.raises(ValueError, match=r"inputs of shape \(28, 28, 1\) but the teacher "
                                         r"'.*' takes \(8, 8, 1\)"):
        keras_kd.Distiller(teacher=teacher, student=other_inputs)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    for head in (keras.layers.Dense(10, activation="softmax", name="probabilities"),
                 keras.layers.Softmax(name="probabilities")):
        outputs = head(hidden if isinstance(head, keras.layers.Dense)
                       else keras.layers.Dense(10)(hidden))
        with pytest.raises(ValueError, match="ends in a softmax \\(layer 'probabilities'\\)"):
            keras_kd.Distiller(teacher=teacher, student=keras.Model(inputs, outputs))
        with pytest.raises(ValueError, match="The teacher .* ends in a softmax"):
            keras_kd.Distiller(teacher=keras_kd.Ensemble([keras.Model(inputs, outputs)]), student=teacher)


def test_outputs_that_look_like_probabilities_get_a_warning(rng):
    x, y = _data(rng, n=16)

    class Probabilities(keras.Model):  # no layer to inspect, as a loaded SavedModel
        def __init__(self, model):
            super().__init__()
            self.model = model

        def call(self, inputs, training=False):
            return tf.nn.softmax(self.model(inputs, training=training))

    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=Probabilities(_dense_model(2)))
    distiller.compile(optimizer="sgd")
    with pytest.warns(UserWarning, match="The student's outputs on the first batch .* look like "
                                         "probabilities"):
        distiller.fit(x, y, epochs=1, verbose=0)
    probabilities = tf.nn.softmax(_dense_model(1)(x))
    cached = tf.data.Dataset.from_tensor_slices((x, y, probabilities)).batch(8)
    plain = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    plain.compile(optimizer="sgd")
    with pytest.warns(UserWarning, match="The batch's teacher_logits on the first batch"):
        plain.fit(cached, epochs=1, verbose=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2)).compile(optimizer="sgd")
        plain = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
        plain.compile(optimizer="sgd")
        plain.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0,
                  shuffle=False)


def test_models_are_taken_by_keyword_only():
    """Keras' own Distiller takes (teacher, student), ours took (student,
    teacher): a positional call is refused instead of training the teacher."""
    trained, fresh = _dense_model(1), _dense_model(2)
    with pytest.raises(TypeError, match=r"by keyword: Distiller\(teacher=\.\.\., student=\.\.\.\)"):
        keras_kd.Distiller(trained, fresh)
    with pytest.raises(TypeError, match="needs student="):
        keras_kd.Distiller(teacher=trained)
    with pytest.raises(ValueError, match="same model"):
        keras_kd.Distiller(teacher=trained, student=trained)


def test_the_teacher_keeps_its_flags_and_weights_and_can_be_a_student_later(rng):
    x, y = _data(rng)
    teacher, student = _dense_model(1), _dense_model(2)
    before = [w.copy() for w in teacher.get_weights()]
    distiller = keras_kd.Distiller(teacher=teacher, student=student)
    distiller.compile(optimizer="adam")
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert teacher.trainable
    assert all(np.array_equal(a, b) for a, b in zip(before, teacher.get_weights()))
    # Only the student's weights are trained, and only they have optimizer slots.
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables}
    assert len(distiller.optimizer.variables) == 2 + 2 * len(student.trainable_variables)
    # The teacher of one distiller is the student of another.
    second = keras_kd.Distiller(teacher=_dense_model(3), student=teacher)
    second.compile(optimizer="adam")
    second.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(before, teacher.get_weights()))


def test_a_frozen_student_is_refused():
    student = _dense_model(2)
    student.trainable = False
    with pytest.raises(ValueError, match="trainable=False, so nothing would train"):
        keras_kd.Distiller(teacher=_dense_model(1), student=student)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_inputs_stop_fit_naming_the_step_before_any_weight_changes(rng, bad):
    x, y = _data(rng)
    x[13, 2] = bad  # the second batch of 8
    student = _dense_model(2)
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=student)
    distiller.compile(optimizer="sgd")
    with pytest.raises(keras_kd.callbacks.NonFiniteInputError,
                       match=r"Non-finite values \(NaN or inf\) in the batch's inputs, "
                             r"training step 2\."):
        distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    # The weights are those after the first batch alone: step 2 changed none.
    reference_student = _dense_model(2)
    reference_distiller = keras_kd.Distiller(teacher=_dense_model(1), student=reference_student)
    reference_distiller.compile(optimizer="sgd")
    reference_distiller.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0)
    for a, b in zip(reference_student.get_weights(), student.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-9)  # a step moves them by ~1e-4
    with pytest.raises(keras_kd.callbacks.NonFiniteInputError, match="an evaluation batch"):
        distiller.evaluate(x, y, batch_size=8, verbose=0)


def test_non_finite_cached_teacher_logits_stop_fit(rng):
    x, y = _data(rng)
    logits = rng.normal(size=(32, NUM_CLASSES)).astype("float32")
    logits[0, 0] = np.nan
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    distiller.compile(optimizer="sgd")
    with pytest.raises(keras_kd.callbacks.NonFiniteInputError, match="the teacher's logits, "
                       "training step 1"):
        distiller.fit(tf.data.Dataset.from_tensor_slices((x, y, logits)).batch(8), verbose=0)


def test_under_xla_non_finite_inputs_log_a_nan_loss_not_a_finite_one(rng):
    """XLA drops assertions; the loss is then logged as NaN, never as 0."""
    x, y = _data(rng)
    x[:, 0] = np.inf
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2))
    distiller.compile(optimizer="sgd", jit_compile=True)
    results = distiller.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert np.isnan(results["loss"])
    with pytest.raises(keras_kd.callbacks.NonFiniteLossError):
        distiller.fit(x, y, batch_size=8, verbose=0,
                      callbacks=[keras_kd.callbacks.StopOnNonFiniteLoss()])


def test_non_finite_sample_weights_and_overflowing_weights_are_named(rng):
    x, y = _data(rng)
    weight = np.ones(32, "float32")
    weight[20] = np.nan
    distiller = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2), alpha=0.5)
    distiller.compile(optimizer="sgd")
    with pytest.raises(keras_kd.callbacks.NonFiniteInputError,
                       match="in the batch's sample weights, training step 3. Check the data"):
        distiller.fit(x, y, sample_weight=weight, batch_size=8, shuffle=False, verbose=0)
    exploding = keras_kd.Distiller(teacher=_dense_model(1), student=_dense_model(2), alpha=0.5)
    exploding.compile(optimizer=keras.optimizers.SGD(learning_rate=1e38))
    with pytest.raises(keras_kd.callbacks.NonFiniteInputError,
                       match=r"in the student's logits, training step \d+\. The student's "
                             r"weights overflowed"):
        exploding.fit(x * 1e3, y, batch_size=8, epochs=5, verbose=0)


def test_several_steps_per_execution_train_the_same_weights(rng):
    x, y = _data(rng)
    trained = []
    for steps in (1, 4):
        student = _dense_model(2)
        distiller = keras_kd.Distiller(teacher=_dense_model(1), student=student, alpha=0.5)
        distiller.compile(optimizer="sgd", steps_per_execution=steps)
        distiller.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        trained.append(student.get_weights())
    for a, b in zip(*trained):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
