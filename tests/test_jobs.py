"""The job configs and the job outline, in process (no app, little training)."""

import os

import pytest

import keras_kd
from keras_kd import config as config_lib
from keras_kd import jobs


def test_every_setting_has_one_flag_and_round_trips_through_the_command_line():
    config = config_lib.build(jobs.DistillConfig, {
        "members": 5, "alpha": 0.25, "policy": "crop_flip+mixup", "flip": "off",
        "jit_compile": True, "teacher_lr": 0.01, "ece_bins": 10,
    })
    args = config_lib.command_line(config)
    assert "--jit_compile" in args and "--members=5" in args and "--flip=off" in args
    parsed = {}
    for arg in args:
        name, _, text = arg[2:].partition("=")
        parsed[name] = config_lib.parse_value(jobs.DistillConfig, name, text or "true")
    assert config_lib.build(jobs.DistillConfig, parsed) == config
    assert len(config_lib.flat(config)) == len(config_lib.flag_paths(jobs.DistillConfig))


@pytest.mark.parametrize("settings, message", [
    ({"dataset": "bogus"}, "Unknown dataset 'bogus'"),
    ({"policy": "crop+mixup"}, r"Unknown policy stage\(s\) \['crop'\]"),
    ({"teacher_arch": "vgg"}, "Unknown model 'vgg'"),
    ({"lr": 0.0}, "lr must be > 0; got 0.0"),
    ({"cached_views": 2}, "policy 'identity' is static"),
    ({"colour": "red"}, r"Not settings of DistillConfig: \['colour'\]"),
    ({"teacher_augment": "mixup"}, "Training augmentation 'mixup' must keep hard labels"),
    ({"teacher_data_fraction": 0.0}, r"teacher_data_fraction must be in \(0, 1\]; got 0.0"),
    ({"distill_data": "d1"}, "distill_data must be one of"),
    ({"loss_plane": 5}, "loss_plane=5 draws the plane .* needs a one-member teacher"),
    ({"loss_plane": 1, "members": 1, "teacher_arch": "resnet8"}, "grid of >= 2 points"),
    ({"student_init": "interpolate:1", "init_scales_lr": True, "members": 1,
      "teacher_arch": "resnet8"}, "scales the learning rate to 0"),
])
def test_a_bad_setting_is_named_when_the_config_is_built(settings, message):
    with pytest.raises(ValueError, match=message):
        config_lib.build(jobs.DistillConfig, settings)


def test_the_learning_rate_scales_with_the_interpolation_but_not_the_controls():
    config = config_lib.build(jobs.DistillConfig, {
        "members": 1, "teacher_arch": "resnet8", "student_init": "interpolate:0.75",
        "init_scales_lr": True, "lr": 0.05, "teacher_augment": "noise",
    })
    assert config.student_spec().lr == pytest.approx(0.0125)
    assert config.control_spec().lr == 0.05 and config.teacher_spec().lr == 0.05
    # The control is trained as a member is: with the members' augmentation.
    assert config.control_spec().augment == config.teacher_spec().augment == "noise"
    unscaled = config_lib.override(config, {"init_scales_lr": False})
    assert unscaled.student_spec().lr == 0.05


def test_an_unwritable_output_folder_is_refused_before_any_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = config_lib.build(jobs.DistillConfig, {
        "saved_models_dir": str(tmp_path / "saved"), "output_dir": str(blocker / "run"),
        "teacher_arch": "mlp", "student_arch": "mlp",
    })
    with pytest.raises(jobs.ConfigError, match=f"Cannot write to '{blocker}/run'"):
        jobs.distill.run(config, verbose=0)
    assert not os.path.exists(tmp_path / "saved" / "digits" / "teachers")


def test_registered_models_and_stages_are_valid_settings():
    keras_kd.models.register("tiny_mlp", lambda shape, classes: keras_kd.models.get(
        "mlp", shape, classes, hidden_units=(4,)))
    try:
        config = config_lib.build(jobs.DistillConfig, {"student_arch": "tiny_mlp"})
        assert config.student.arch == "tiny_mlp"
    finally:
        keras_kd.models.unregister("tiny_mlp")
    with pytest.raises(ValueError, match="Unknown model 'tiny_mlp'"):
        config_lib.build(jobs.DistillConfig, {"student_arch": "tiny_mlp"})


def _lock_record(folder, pid):
    import json
    import socket

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as f:
        json.dump({"pid": pid, "host": socket.gethostname(), "what": "a keras_kd job",
                   "started": "2026-01-01T00:00:00"}, f)


def test_a_second_run_into_a_folder_is_refused_naming_the_holder(tmp_path):
    import subprocess

    holder = subprocess.Popen(["sleep", "60"])
    try:
        run_dir = tmp_path / "run"
        _lock_record(run_dir, holder.pid)
        config = config_lib.build(jobs.DistillConfig, {
            "saved_models_dir": str(tmp_path / "saved"), "output_dir": str(run_dir),
            "teacher_arch": "mlp", "student_arch": "mlp"})
        with pytest.raises(jobs.lock.FolderInUseError,
                           match=f"in use by a keras_kd job: process {holder.pid} on "):
            jobs.distill.run(config, verbose=0)
        assert not os.path.exists(tmp_path / "saved" / "digits" / "teachers" / "mlp")
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone (killed), the lock is stale: the next run takes it over.
    with jobs.lock.FolderLock(str(run_dir)) as lock:
        assert os.path.exists(lock.path)
    assert not os.path.exists(run_dir / ".lock")


def test_a_backup_made_with_other_settings_is_never_resumed(tmp_path, caplog):
    backup = tmp_path / "backup" / "student"
    job = jobs.outline.JobRun(keras_kd.runtime.Runtime()).open(str(tmp_path))
    before = {"lr": 0.002, "optimizer": "adam", "data_digest": "d1"}
    assert job.resume_epoch(str(backup), before) == 0
    (backup / "epoch-0003.state.npz").write_bytes(b"a backup")  # as a killed run leaves it
    assert job.resume_epoch(str(backup), before) == 3  # same settings: resumed
    assert job.resume_epoch(str(backup), {**before, "lr": 0.05, "optimizer": "sgd"}) == 0
    assert not (backup / "epoch-0003.state.npz").exists()
    assert job.resume_refused == {
        "student": "the backup was made with other settings: lr, optimizer"}
    assert "Not resuming from" in caplog.text and "lr, optimizer" in caplog.text
    job.finish()


def test_a_damaged_generator_is_refused_with_the_command_that_fixes_it(tmp_path):
    damaged = tmp_path / "generator.keras"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 96)  # a .keras cut short
    config = config_lib.build(jobs.DistillConfig, {
        "saved_models_dir": str(tmp_path / "saved"), "policy": "gan",
        "generator": str(damaged), "teacher_arch": "mlp", "student_arch": "mlp"})
    with pytest.raises(jobs.ConfigError, match=(
            f"The generator at '{damaged}' cannot be loaded .* Delete it and train it again: "
            "`python -m launch.train_gan --dataset=digits`")):
        jobs.distill.run(config, verbose=0)
    assert not os.path.exists(tmp_path / "saved")


def test_a_generator_changed_since_its_record_or_of_other_data_is_refused(tmp_path):
    import json

    import keras

    generator = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64),
                                  keras.layers.Reshape((8, 8, 1))])
    path = tmp_path / "generator.keras"
    generator.save(path)
    config = config_lib.build(jobs.DistillConfig, {
        "saved_models_dir": str(tmp_path / "saved"), "policy": "gan", "generator": str(path),
        "teacher_arch": "mlp", "student_arch": "mlp"})
    record = {"sha256": "0" * 64, "dataset": "digits", "data_digest": "d"}
    (tmp_path / "generator.json").write_text(json.dumps(record))
    with pytest.raises(jobs.ConfigError, match="it is damaged. Delete both and train it again"):
        jobs.distill.run(config, verbose=0)
    record["sha256"] = keras_kd.digests.file_digest(str(path))
    (tmp_path / "generator.json").write_text(json.dumps(record))
    with pytest.raises(jobs.ConfigError, match="was trained on other data than dataset 'digits'"):
        jobs.distill.run(config, verbose=0)
    assert not os.path.exists(tmp_path / "saved")


def test_a_runs_result_key_follows_its_settings_data_and_generator_not_its_folder(tmp_path):
    generator = tmp_path / "generator.keras"
    generator.write_bytes(b"first")
    base = config_lib.build(jobs.DistillConfig, {"policy": "gan", "generator": str(generator)})
    key = jobs.distill.result_key(base)

    def key_with(**settings):
        return jobs.distill.result_key(config_lib.override(base, settings))

    assert key_with(output_dir=str(tmp_path / "a"), saved_models_dir=str(tmp_path)) == key
    assert len({key, key_with(seed=1), key_with(temperature=2.0),
                key_with(dataset="mnist1d:num_train=100,num_test=50")}) == 4
    generator.write_bytes(b"retrained")
    assert jobs.distill.result_key(base) != key


@pytest.mark.parametrize("settings, message", [
    ({}, "dataset 'digits' has no default source of them; name one with --ood_dataset"),
    ({"ood_dataset": "mnist1d:num_train=20,num_test=10"},
     r"has inputs of shape \(40, 1\); dataset 'digits' has inputs of shape \(8, 8, 1\)"),
])
def test_out_of_distribution_inputs_need_a_dataset_of_the_same_shape(tmp_path, settings,
                                                                      message):
    config = config_lib.build(jobs.DistillConfig, {
        "saved_models_dir": str(tmp_path / "saved"), "policy": "ood",
        "data_dir": str(tmp_path / "data"), "teacher_arch": "mlp", "student_arch": "mlp",
        **settings})
    with pytest.raises(jobs.ConfigError, match=message):
        jobs.distill.run(config, verbose=0)
    assert not os.path.exists(tmp_path / "saved")


def test_the_ood_stage_draws_another_datasets_inputs_by_default_for_mnist1d():
    config = config_lib.build(jobs.DistillConfig, {"dataset": "mnist1d:num_train=500",
                                                   "policy": "shift+ood"})
    assert config.distillation_set.ood_dataset_for("mnist1d:num_train=500") == (
        "mnist1d:num_train=500,seed=43,shuffle_seq=true")
    with pytest.raises(ValueError, match=r"one source of extra inputs per policy; got \['gan', "
                                         r"'ood'\]"):
        keras_kd.data.Policy.parse("gan+ood")


def _float_settings(config_class):
    return [config_lib.flag_name(field) for _, field, owner in
            config_lib.leaf_settings(config_class)
            if config_lib.leaf_type(owner, field)[0] is float]


@pytest.mark.parametrize("config_class", [jobs.DistillConfig, jobs.GANConfig])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_every_float_setting_refuses_non_finite_values(config_class, value):
    names = _float_settings(config_class)
    assert {"lr", "teacher_lr", "weight_decay", "temperature", "noise_std",
            "mixup_alpha"} <= set(names) or config_class is jobs.GANConfig
    for name in names:
        with pytest.raises(ValueError, match=f"{name} must be a finite number; got {value}"):
            config_lib.build(config_class, {name: value})


@pytest.mark.parametrize("seed, message", [(-1, "seed must be in \\[0, 2147483647\\]; got -1"),
                                           (2**31, "seed must be in")])
def test_a_seed_out_of_range_is_named(seed, message):
    with pytest.raises(ValueError, match=message):
        config_lib.build(jobs.DistillConfig, {"seed": seed})


@pytest.mark.parametrize("settings, message", [
    ({"student_arch": "lstm"}, r"student_arch='lstm' reads tokens, but dataset 'digits' holds "
                               r"images \(input shape \(8, 8, 1\)\)"),
    ({"teacher_arch": "mnist1d_cnn"}, r"teacher_arch='mnist1d_cnn' reads signals, but dataset "
                                      r"'digits' holds images"),
])
def test_a_model_that_does_not_read_the_data_is_refused_before_training(tmp_path, settings,
                                                                          message):
    config = config_lib.build(jobs.DistillConfig, {
        "saved_models_dir": str(tmp_path), "teacher_arch": "mlp", "student_arch": "mlp",
        **settings})
    with pytest.raises(jobs.ConfigError, match=message):
        jobs.distill.run(config, verbose=0)
    teachers = jobs.TeachersConfig(data=config.data, teacher=config.teacher,
                                   output=config.output)
    if "teacher_arch" in settings:
        with pytest.raises(jobs.ConfigError, match=message):
            jobs.teachers.train(teachers, verbose=0)
    assert not list(tmp_path.rglob("*.keras"))


def test_the_same_npz_by_another_path_keys_the_same_members(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "data" / "toy.npz"
    path.parent.mkdir()
    np.savez(path, x_train=rng.random((12, 4)), y_train=np.arange(12) % 3,
             x_test=rng.random((6, 4)), y_test=np.arange(6) % 3)
    spec = jobs.DistillConfig().teacher_spec()
    keys = set()
    for name in (f"npz:{path}", f"npz:{tmp_path}/data/../data/toy.npz"):
        data = keras_kd.data.load(name)
        keys.add((data.info.slug, jobs.teachers.member_key(spec, data)))
    assert len(keys) == 1
    np.savez(path, x_train=rng.random((12, 4)), y_train=np.arange(12) % 3,
             x_test=rng.random((6, 4)), y_test=np.arange(6) % 3)
    changed = keras_kd.data.load(f"npz:{path}")
    assert jobs.teachers.member_key(spec, changed) not in {key for _, key in keys}


@pytest.mark.slow  # two distill runs
def test_the_fidelity_curve_changes_which_epochs_have_points_and_nothing_else(tmp_path):
    common = {"saved_models_dir": str(tmp_path), "teacher_arch": "mlp", "student_arch": "mlp",
              "members": 1, "teacher_epochs": 1, "epochs": 5, "policy": "crop_flip"}
    reports = {
        curve: jobs.distill.run(config_lib.build(jobs.DistillConfig, {
            **common, "fidelity_curve": curve, "output_dir": str(tmp_path / curve)}), verbose=0)
        for curve in ("all", "log")}
    assert reports["all"]["splits"] == reports["log"]["splits"]
    every, sparse = (reports[curve]["history"]["test_agreement"] for curve in ("all", "log"))
    assert len(every) == len(sparse) == 5 and sparse[2] is None
    assert [every[k] for k in (0, 1, 3, 4)] == [sparse[k] for k in (0, 1, 3, 4)]
    assert reports["all"]["history"]["loss"] == reports["log"]["history"]["loss"]


def test_a_lock_held_by_a_live_process_is_waited_for_then_taken(tmp_path, caplog):
    import logging
    import subprocess
    import threading
    import time

    holder = subprocess.Popen(["sleep", "1"])
    threading.Thread(target=holder.wait).start()  # reaped as it ends: no zombie holds the pid
    _lock_record(tmp_path / "members", holder.pid)
    lock = jobs.lock.FolderLock(str(tmp_path / "members"))
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        lock.acquire_when_free(poll_s=0.05)
    try:
        assert time.monotonic() - started > 0.5  # it waited for the holder to end
        assert sum("Waiting" in record.message for record in caplog.records) == 1
    finally:
        lock.release()


def test_a_lock_held_on_another_host_is_refused_not_waited_for(tmp_path):
    import json

    os.makedirs(tmp_path / "members")
    with open(tmp_path / "members" / ".lock", "w") as f:
        json.dump({"pid": 1, "host": "another-host", "what": "a shard"}, f)
    with pytest.raises(jobs.lock.FolderInUseError, match="process 1 on another-host"):
        jobs.lock.FolderLock(str(tmp_path / "members")).acquire_when_free(poll_s=0.01)
