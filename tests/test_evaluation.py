import keras
import pytest

import keras_kd
from keras_kd import evaluation
from keras_kd import jobs


def test_distillation_loss_is_what_the_distiller_minimizes(digits):
    keras.utils.set_random_seed(0)
    teacher = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(32,))
    student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(16,))
    batches = keras_kd.data.batched(digits.test, 100)
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.3, temperature=2.5)
    distiller.compile("adam")
    expected = distiller.evaluate(batches, verbose=0, return_dict=True)
    measured = evaluation.fidelity_metrics(teacher, student, batches, distillation=keras_kd.jobs.Distillation(alpha=0.3, temperature=2.5))
    assert measured["distillation_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert measured["agreement"] == pytest.approx(expected["agreement"], abs=1e-6)
    assert "distillation_loss" not in evaluation.fidelity_metrics(teacher, student, batches)


def test_a_model_is_its_own_perfect_representation_match(digits):
    model = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    other = keras_kd.models.get("resnet8", (8, 8, 1), 10)
    batches = keras_kd.data.batched(digits.test, 128)
    assert evaluation.representation_similarity(model, model, batches) == pytest.approx(1.0, abs=1e-5)
    assert evaluation.representation_similarity(model, other, batches) < 0.99


def test_teacher_training_settings_default_to_the_students():
    def config(**settings):
        return keras_kd.config.build(jobs.DistillConfig, settings)

    plain = config(optimizer="sgd", lr=0.05)
    assert (plain.teacher_spec().optimizer, plain.teacher_spec().lr) == ("sgd", 0.05)
    split = config(optimizer="sgd", lr=0.05, teacher_optimizer="adam", teacher_lr=0.002)
    assert (split.teacher_spec().optimizer, split.teacher_spec().lr) == ("adam", 0.002)
    assert (split.student_spec().optimizer, split.student_spec().lr) == ("sgd", 0.05)
    # Unset, the teacher is the default one, so existing members are reused.
    assert config(teacher_optimizer="adam", teacher_lr=0.002).teacher_spec() \
        == config().teacher_spec()
    # The GAN job resolves its rating teacher the same way, so it finds the same members.
    gan = keras_kd.config.build(jobs.GANConfig, {"optimizer": "sgd", "lr": 0.05})
    assert gan.teacher_spec() == plain.teacher_spec()


def test_history_keeps_the_last_row_of_a_repeated_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,loss,test_agreement,train_agreement\n"
        "0,1.0,0.5,NA\n"
        "1,0.8,0.6,0.7\n"
        "1,0.7,0.65,0.75\n"  # epoch 2 repeated after a kill before its backup
        "2,0.5,0.9,0.95\n"
    )
    history = jobs.report.read_history(str(path), epochs=3)
    assert history["epoch"] == [1, 2, 3]
    assert history["loss"] == [1.0, 0.7, 0.5]
    assert history["train_agreement"] == [None, 0.75, 0.95]
    assert jobs.report.read_history(str(tmp_path / "missing.csv"), 3) == {}


def test_history_survives_a_log_appended_to_across_a_resume(tmp_path):
    # Two runs' loggers in one file used to fail every rerun with
    # "invalid literal for int() ... 'epoch'".
    path = tmp_path / "history.csv"
    path.write_text(
        "epoch,loss,test_agreement\n"
        "0,1.0,0.5\n"
        "epoch,loss,test_agreement,train_agreement\n"
        "1,0.8,0.6,0.7\n"
        "2,0.5,0.9\n"  # cut short by a kill
    )
    history = jobs.report.read_history(str(path), epochs=3)
    assert history["epoch"] == [1, 2]
    assert history["loss"] == [1.0, 0.8]
    assert history["train_agreement"] == [None, 0.7]
