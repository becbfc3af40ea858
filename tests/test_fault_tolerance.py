"""Preemption and faults: killed runs resume, NaN losses stop loudly, backups are atomic."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd import callbacks
from tests.test_launch import _run_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--teacher_arch=mlp", "--members=2", "--teacher_epochs=6", "--student_arch=mlp",
         "--epochs=6", "--batch_size=16", "--verbose=2", "--deterministic",
         "--policy=crop_flip", "--backup_every_steps=0"]  # a backup each epoch, to kill after
RUN = os.path.join("digits", "distill", _run_name(*FLAGS))


def _start(saved, log):
    return subprocess.Popen(
        [sys.executable, "-m", "launch.distill", *FLAGS, f"--saved_models_dir={saved}"],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def _kill_after_backup(process, pattern, timeout=240):
    """SIGKILLs `process` a moment after a backup matching `pattern` appears."""
    deadline = time.monotonic() + timeout
    while not glob.glob(pattern):
        assert process.poll() is None, "the run ended before it was killed"
        assert time.monotonic() < deadline, f"no backup matching {pattern}"
        time.sleep(0.01)
    time.sleep(0.15)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    return callbacks.BackupAndRestore.completed_epochs(os.path.dirname(glob.glob(pattern)[0]))


def _first_epoch_line(log):
    with open(log) as f:
        return re.search(r"^Epoch (\d+)/6$", f.read(), re.MULTILINE).group(1)


def _student(saved):
    model = keras.saving.load_model(os.path.join(saved, RUN, "student.keras"), compile=False)
    return model.get_weights()


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_bit_for_bit_as_an_uninterrupted_one(tmp_path):
    killed, clean = str(tmp_path / "killed"), str(tmp_path / "clean")
    backup = os.path.join(killed, RUN, "backup")

    # 1. Killed while the first teacher member trains.
    first = _start(killed, tmp_path / "1.log")
    teacher_epochs = _kill_after_backup(
        first, os.path.join(backup, "teachers", "*", "member_0", "epoch-*.weights.h5"))
    assert 1 <= teacher_epochs < 6
    assert not os.path.exists(os.path.join(killed, RUN, "report.json"))

    # 2. Rerun: the member resumes after its last backup; killed while the student trains.
    second = _start(killed, tmp_path / "2.log")
    student_epochs = _kill_after_backup(
        second, os.path.join(backup, "student", "epoch-*.state.npz"))
    assert _first_epoch_line(tmp_path / "2.log") == str(teacher_epochs + 1)
    assert 1 <= student_epochs < 6
    members = sorted(glob.glob(os.path.join(killed, "digits", "teachers", "*", "member_*.keras")))
    assert len(members) == 2  # both finished, and kept

    # 3. Rerun to the end: teachers reused, the student resumes.
    third = _start(killed, tmp_path / "3.log")
    assert third.wait(timeout=300) == 0, open(tmp_path / "3.log").read()[-3000:]
    assert _first_epoch_line(tmp_path / "3.log") == str(student_epochs + 1)
    with open(os.path.join(killed, RUN, "report.json")) as f:
        report = json.load(f)
    assert report["resumed_at_epoch"] == student_epochs
    assert all(member["reused"] for member in report["teacher_members"])
    assert not os.path.exists(backup)  # removed once every file was written

    uninterrupted = _start(clean, tmp_path / "clean.log")
    assert uninterrupted.wait(timeout=300) == 0
    for a, b in zip(_student(killed), _student(clean)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_rerun_with_other_settings_does_not_resume_the_killed_run(tmp_path):
    # Killed, then rerun into the same folder with --lr and --optimizer changed:
    # it used to resume the student from weights distilled from the old teacher.
    saved, run_dir = str(tmp_path / "saved"), str(tmp_path / "run")
    flags = [flag for flag in FLAGS if flag != "--deterministic"] + [f"--output_dir={run_dir}"]

    def start(*extra, log):
        return subprocess.Popen(
            [sys.executable, "-m", "launch.distill", *flags, *extra,
             f"--saved_models_dir={saved}"],
            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    first = start(log=tmp_path / "1.log")
    epochs = _kill_after_backup(first, os.path.join(run_dir, "backup", "student",
                                                     "epoch-*.state.npz"))
    assert epochs >= 1
    second = start("--lr=0.05", "--optimizer=sgd", log=tmp_path / "2.log")
    assert second.wait(timeout=300) == 0, open(tmp_path / "2.log").read()[-3000:]
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert report["resumed_at_epoch"] == 0
    assert "lr, optimizer" in report["resume_refused"]["student"]
    assert (report["config"]["lr"], report["config"]["optimizer"]) == (0.05, "sgd")
    assert "Not resuming from" in open(tmp_path / "2.log").read()


@pytest.mark.slow
def test_a_nan_loss_stops_the_app_with_the_step_and_terms(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "launch.distill", "--teacher_arch=mlp", "--members=1",
         "--teacher_epochs=1", "--student_arch=mlp", "--epochs=2", "--verbose=0",
         "--lr=1e30", f"--saved_models_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode != 0
    assert re.search(r"error: Non-finite loss at epoch 1, step \d+ .*loss=(nan|inf)", result.stderr)
    assert "Traceback" not in result.stderr


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    return model


class _CrashAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_backup_restores_weights_optimizer_state_and_epoch(tmp_path, rng):
    x, y = rng.random((32, 4)).astype("float32"), rng.random((32, 3)).astype("float32")
    fit = dict(x=x, y=y, batch_size=8, epochs=5, shuffle=False, verbose=0)
    reference = _model()
    reference.fit(**fit)

    model = _model()
    backup = callbacks.BackupAndRestore(str(tmp_path), delete_on_end=False)
    with pytest.raises(KeyboardInterrupt):
        model.fit(**fit, callbacks=[backup, _CrashAt(3)])
    assert os.listdir(tmp_path) == ["epoch-0003.weights.h5"]  # older ones replaced
    resumed = _model()
    history = resumed.fit(**fit, callbacks=[callbacks.BackupAndRestore(str(tmp_path))])
    assert len(history.history["loss"]) == 2
    assert int(resumed.optimizer.iterations) == int(reference.optimizer.iterations) == 20
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not os.path.exists(tmp_path)  # delete_on_end


@pytest.mark.slow
def test_a_distillers_backup_holds_the_student_and_optimizer_not_the_teacher(tmp_path, rng):
    x, y = rng.random((32, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 32)
    fit = dict(x=x, y=y, batch_size=8, epochs=4, shuffle=False, verbose=0)

    def distiller(hidden_units=(8,)):
        keras.utils.set_random_seed(3)
        teacher = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(64, 64))
        student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=hidden_units)
        model = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.5)
        model.compile(optimizer="adam")
        return model

    reference = distiller()
    reference.fit(**fit)
    crashed = distiller()
    folder = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(**fit, callbacks=[callbacks.BackupAndRestore(str(folder), delete_on_end=False),
                                      _CrashAt(2)])
    (name,) = os.listdir(folder)
    assert name == "epoch-0002.state.npz"
    with np.load(folder / name) as state:
        saved = [state[key] for key in sorted(state.files)]
    expected = [*crashed.student.variables, *crashed.optimizer.variables]
    assert [array.shape for array in saved] == [tuple(v.shape) for v in expected]
    teacher_size = sum(int(np.prod(v.shape)) for v in crashed.teacher.weights)
    assert sum(array.size for array in saved) < teacher_size  # no teacher weights inside
    shutil.copytree(folder, tmp_path / "copy")

    resumed = distiller()
    history = resumed.fit(**fit, callbacks=[callbacks.BackupAndRestore(str(folder))])
    assert len(history.history["loss"]) == 2
    assert int(resumed.optimizer.iterations) == int(reference.optimizer.iterations) == 16
    for a, b in zip(resumed.student.get_weights(), reference.student.get_weights()):
        np.testing.assert_array_equal(a, b)

    other = distiller(hidden_units=(4,))  # another student cannot take this backup
    with pytest.raises(ValueError, match="do not match this model's"):
        other.fit(**fit, callbacks=[callbacks.BackupAndRestore(str(tmp_path / "copy"))])


def test_a_partial_backup_is_never_restored(tmp_path, rng):
    model = _model()
    model.fit(rng.random((8, 4)), rng.random((8, 3)), epochs=2, verbose=0,
              callbacks=[callbacks.BackupAndRestore(str(tmp_path), delete_on_end=False)])
    # What a kill mid-write leaves: a staging folder, never a finished name.
    os.makedirs(tmp_path / ".staging-x")
    (tmp_path / ".staging-x" / "artifact.weights.h5").write_bytes(b"partial")
    assert callbacks.BackupAndRestore.completed_epochs(str(tmp_path)) == 2


def test_stop_on_non_finite_loss_names_the_step_and_the_terms(rng):
    teacher = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(8,))
    student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(8,))
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.5)
    # Under XLA, which drops the Distiller's own assertions, a NaN reaches the loss.
    distiller.compile(optimizer="sgd", jit_compile=True)
    x = rng.random((64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    weight = np.ones(64, "float32")
    weight[40] = np.nan  # in the third batch of 16 (a NaN input would not do: ReLU drops NaNs)
    with pytest.raises(callbacks.NonFiniteLossError) as error:
        distiller.fit(x, y, sample_weight=weight, batch_size=16, epochs=2, shuffle=False, verbose=0,
                      callbacks=[callbacks.StopOnNonFiniteLoss("Backups are in DIR.")])
    message = str(error.value)
    assert "epoch 1, step 3" in message and "Backups are in DIR." in message
    for term in ("loss=nan", "hard_loss=nan", "soft_loss=nan"):
        assert term in message


def test_resumed_epoch_streams_match_the_uninterrupted_stream(digits):
    def batches(dataset):
        return [batch["x"].numpy() for batch in dataset]

    make = dict(split=digits.train.take(100), num_classes=10, policy="crop_flip+mixup",
                batch_size=32, seed=5, epochs=4)
    whole = batches(keras_kd.data.distillation_set(**make))
    resumed = batches(keras_kd.data.distillation_set(**make, initial_epoch=2))
    assert len(whole) == 16 and len(resumed) == 8
    for a, b in zip(whole[8:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(whole[0], whole[4])  # epochs differ
    stream = keras_kd.data.batched(digits.train.take(100), 32, shuffle=True, seed=1, epochs=3,
                                   initial_epoch=1)
    assert keras_kd.data.steps_per_epoch(stream, 3, 1) == 4
    full = [y.numpy() for _, y in keras_kd.data.batched(digits.train.take(100), 32, shuffle=True,
                                                          seed=1, epochs=3)]
    for a, (_, b) in zip(full[4:], stream):
        np.testing.assert_array_equal(a, b.numpy())
    assert sorted(np.concatenate(full[:4])) == sorted(np.concatenate(full[4:8]))  # whole epochs


@pytest.mark.slow
def test_fit_under_mirrored_sees_the_batches_of_one_device(digits, mirrored):
    def fit(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(2)
            teacher = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(16,))
            student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(16,))
            distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.2)
            distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        stream = keras_kd.data.distillation_set(digits.train.take(90), 10, "crop_flip",
                                                batch_size=20, seed=0, epochs=2)
        # 90 examples: each epoch ends on a batch of 10, and the first batch
        # would have been drawn for Keras' symbolic build.
        distiller.fit(stream, epochs=2, steps_per_epoch=keras_kd.data.steps_per_epoch(stream, 2),
                      verbose=0)
        return student.get_weights()

    for a, b in zip(fit(tf.distribute.get_strategy()), fit(mirrored)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_non_finite_loss_says_whether_a_backup_exists_and_of_which_epoch(rng, tmp_path):
    teacher = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(8,))
    student = keras_kd.models.get("mlp", (8, 8, 1), 10, hidden_units=(8,))
    distiller = keras_kd.Distiller(teacher=teacher, student=student, alpha=0.5)
    distiller.compile(optimizer="sgd", jit_compile=True)  # as above
    x = rng.random((64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    broken = np.ones(64, "float32")
    broken[40] = np.nan
    backup_dir = str(tmp_path / "backup")
    stop = callbacks.StopOnNonFiniteLoss("Training stopped.", backup_dir=backup_dir)
    with pytest.raises(callbacks.NonFiniteLossError,
                       match="No epoch had finished, so there is no backup to resume from."):
        distiller.fit(x, y, sample_weight=broken, batch_size=16, verbose=0, callbacks=[stop])
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0,
                  callbacks=[callbacks.BackupAndRestore(backup_dir, delete_on_end=False)])
    with pytest.raises(callbacks.NonFiniteLossError,
                       match=f"Its last good backup, after epoch 1, is in '{backup_dir}'."):
        distiller.fit(x, y, sample_weight=broken, batch_size=16, verbose=0, callbacks=[stop])


def test_backups_on_a_step_cadence_keep_the_last_epoch_and_resume_from_theirs(tmp_path):
    def model():
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        net.compile("sgd", "mse")
        return net

    class Seen(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(callbacks.BackupAndRestore.completed_epochs(folder))

    x, y = np.ones((16, 4), "float32"), np.zeros((16, 2), "float32")
    folder = str(tmp_path / "backup")
    seen = Seen()
    backup = callbacks.BackupAndRestore(folder, delete_on_end=False, every_steps=8)
    model().fit(x, y, batch_size=4, epochs=5, callbacks=[backup, seen], verbose=0)
    assert seen.epochs == [0, 2, 2, 4, 5]  # 4 steps an epoch: every 2nd epoch, and the last
    with pytest.raises(ValueError, match="every_steps must be an integer >= 0; got -1"):
        callbacks.BackupAndRestore(folder, every_steps=-1)


def _member_folders(root, members=40):
    """A teachers' backup tree as two workers leave it: the chief's member folders, each holding
    the worker's, one of which still holds a backup."""
    for k in range(members):
        os.makedirs(root / "mlp-key" / f"member_{k}" / "worker-1")
    (root / "mlp-key" / "member_7" / "worker-1" / "epoch-0003.weights.h5").write_bytes(b"kept")


def test_workers_clearing_one_backup_tree_at_once_neither_fails_nor_removes_a_backup(tmp_path):
    # The chief and a worker clear the shared tree when each is done: whichever looks second
    # finds folders gone (or refilled) under it, and that is no error.
    from concurrent import futures

    from keras_kd import backup

    for trial in range(20):
        root = tmp_path / f"trial-{trial}"
        _member_folders(root)
        with futures.ThreadPoolExecutor(4) as pool:
            clearing = [
                *(pool.submit(backup.remove_empty_folders, str(root / "mlp-key"), str(root))
                  for _ in range(2)),
                *(pool.submit(backup.remove_backups, str(root / "mlp-key" / f"member_{k}"))
                  for k in range(40)),
            ]
            for done in clearing:
                done.result()
        assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
            "mlp-key", "mlp-key/member_7", "mlp-key/member_7/worker-1",
            "mlp-key/member_7/worker-1/epoch-0003.weights.h5"]


def test_removing_a_folder_another_process_removed_or_filled(tmp_path):
    from keras_kd import backup

    assert backup.remove_if_empty(str(tmp_path / "gone"))
    assert backup._backups(str(tmp_path / "gone")) == {}
    backup.remove_backups(str(tmp_path / "gone"))
    (tmp_path / "filled").mkdir()
    (tmp_path / "filled" / "epoch-0001.weights.h5").write_bytes(b"x")
    assert not backup.remove_if_empty(str(tmp_path / "filled"))
    assert (tmp_path / "filled" / "epoch-0001.weights.h5").exists()
    backup.remove_backups(str(tmp_path / "filled"))
    assert not (tmp_path / "filled").exists()
