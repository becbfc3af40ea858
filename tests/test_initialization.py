import keras
import numpy as np
import pytest

import keras_kd
from keras_kd import initialization
from keras_kd import training


def test_student_init_parses_and_names_bad_values():
    assert initialization.StudentInit.parse("interpolate:0.25", "teacher_init") == \
        initialization.StudentInit(0.25, "teacher_init")
    for text in ("interpolate:1.5", "interpolate", "teacher", "interpolate:x"):
        with pytest.raises(ValueError, match=repr(text)):
            initialization.StudentInit.parse(text)
    with pytest.raises(ValueError, match="'final'"):
        initialization.StudentInit.parse("random", "final")


def test_interpolation_mixes_every_weight_and_checks_architectures():
    keras.utils.set_random_seed(0)
    student = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    teacher = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    before = [w.numpy() for w in student.weights]
    initialization.interpolate_weights(student, teacher, 0.75)
    for mixed, start, target in zip(student.weights, before, teacher.weights):
        np.testing.assert_allclose(mixed.numpy(), 0.75 * target.numpy() + 0.25 * start,
                                   rtol=1e-5, atol=1e-6)
    initialization.interpolate_weights(student, teacher, 1.0)
    for mine, theirs in zip(student.weights, teacher.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="the teacher's architecture"):
        initialization.interpolate_weights(
            student, keras_kd.models.get("resnet14", (8, 8, 1), 10), 0.5
        )


def test_batch_norm_statistics_become_the_mean_over_batches(digits):
    model = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    batches = [x for x, _ in keras_kd.data.batched(digits.train, 200)]
    kernel = model.get_layer("stem_conv").kernel.numpy()
    stem = model.get_layer("stem_bn")
    weights_before = [w.numpy() for w in model.trainable_weights]
    assert initialization.reestimate_batch_norm(model, batches) == 9
    conv = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
    conv.build((None, 8, 8, 1))
    conv.kernel.assign(kernel)
    means = [conv(x).numpy().mean(axis=(0, 1, 2)) for x in batches]
    variances = [conv(x).numpy().var(axis=(0, 1, 2)) for x in batches]
    np.testing.assert_allclose(stem.moving_mean.numpy(), np.mean(means, axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stem.moving_variance.numpy(), np.mean(variances, axis=0),
                               rtol=1e-4, atol=1e-6)
    assert stem.momentum == 0.99  # restored
    for before, after in zip(weights_before, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())


@pytest.mark.slow
def test_initial_model_is_where_training_starts(digits):
    spec = training.ClassifierSpec("resnet8", epochs=1, batch_size=256, optimizer="sgd", lr=1e-9)
    seed = training.member_seed(spec, 0)
    start = training.initial_model(spec, digits.info, seed)
    trained = training.train_classifier(spec, digits, seed, verbose=0)
    kernels = [(a, b) for a, b in zip(start.weights, trained.weights) if "kernel" in a.path]
    assert kernels
    for initial, after in kernels:  # lr 1e-9 leaves them where they began
        np.testing.assert_allclose(initial.numpy(), after.numpy(), atol=1e-6)
    other = training.initial_model(spec, digits.info, training.member_seed(spec, 1))
    assert not np.allclose(other.weights[0].numpy(), start.weights[0].numpy())


def test_interpolation_needs_one_teacher_of_the_students_architecture():
    build = keras_kd.config.build
    with pytest.raises(ValueError, match="one-member teacher of the student's architecture"):
        build(keras_kd.jobs.DistillConfig, {"student_init": "interpolate:0.5"})
    config = build(keras_kd.jobs.DistillConfig,
                   {"student_init": "interpolate:0.5", "members": 1, "teacher_arch": "resnet8"})
    assert "initinterpolate0.5-teacher" in keras_kd.jobs.folders.path(config, "digits", "distill")
