import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

# Each test starts an app in a fresh process (TensorFlow import, real training).
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--teacher_arch=mlp", "--members=2", "--teacher_epochs=1", "--student_arch=mlp",
        "--epochs=1", "--batch_size=128", "--verbose=0"]


def _run_name(*flags):
    """The default run folder name launch.distill derives from these flags."""
    from keras_kd import config as config_lib
    from keras_kd import jobs

    names = config_lib.flag_paths(jobs.DistillConfig)
    settings = {}
    for flag in flags:
        name, _, text = flag[2:].partition("=")
        if name.startswith("no") and name[2:] in names and not text:
            name, text = name[2:], "false"
        if name in names:
            settings[name] = config_lib.parse_value(jobs.DistillConfig, name, text or "true")
    return config_lib.build(jobs.DistillConfig, settings).run_name()


def _run(app, *flags, check=True):
    return subprocess.run(
        [sys.executable, "-m", f"launch.{app}", *flags],
        cwd=ROOT, capture_output=True, text=True, check=check,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_distill_end_to_end_writes_the_report_and_reuses_teachers(tmp_path):
    saved = str(tmp_path / "saved")
    result = _run("distill", *TINY, "--alpha=0.1", "--temperature=2", f"--saved_models_dir={saved}")
    run_dir = os.path.join(saved, "digits", "distill", _run_name(*TINY, "--alpha=0.1", "--temperature=2"))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert set(report) >= {"config", "splits", "artifacts"}
    assert (report["config"]["alpha"], report["config"]["temperature"], report["config"]["members"]) == (0.1, 2.0, 2)
    for split in ("train", "test"):
        row = report["splits"][split]
        assert set(row) == {"teacher_accuracy", "student_accuracy", "agreement",
                            "predictive_kl", "student_ece", "teacher_ece", "linear_cka",
                            "distillation_loss", "student_nll", "teacher_nll",
                            "control_accuracy", "control_agreement", "control_predictive_kl",
                            "control_ece", "control_nll"}
        assert 0.0 <= row["agreement"] <= 1.0 and row["predictive_kl"] >= 0.0
        assert 0.5 < row["teacher_accuracy"] <= 1.0  # one epoch of an MLP on digits learns
    assert os.path.isfile(os.path.join(report["artifacts"]["saved_model"], "saved_model.pb"))
    assert os.path.isfile(report["artifacts"]["keras"])
    assert "| test |" in result.stdout and "| test |" in open(report["artifacts"]["report_md"]).read()
    assert [m["reused"] for m in report["teacher_members"]] == [False, False]
    assert not [name for name in os.listdir(run_dir) if name.startswith(".staging")]

    flagfile = tmp_path / "tiny.flags"
    flagfile.write_text("\n".join([*TINY, "--alpha=0.1", "--temperature=2", f"--saved_models_dir={saved}"]))
    _run("distill", f"--flagfile={flagfile}")
    with open(os.path.join(run_dir, "report.json")) as f:
        again = json.load(f)
    assert [m["reused"] for m in again["teacher_members"]] == [True, True]
    # Reused teachers and cached teacher logits change nothing: same seed, same run.
    assert again["splits"] == report["splits"]
    assert len(os.listdir(os.path.join(saved, "digits", "teacher_cache"))) == 1


def test_distill_with_a_policy_reports_the_distillation_set(tmp_path):
    saved = str(tmp_path / "saved")
    _run("distill", *TINY, "--policy=crop_flip+mixup", "--mixup_portion=0.5",
         f"--saved_models_dir={saved}")
    run_dir = os.path.join(saved, "digits", "distill", _run_name(*TINY, "--policy=crop_flip+mixup", "--mixup_portion=0.5"))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert set(report["splits"]) == {"train", "test", "distill"}
    assert report["config"]["policy_settings"] == {
        "policy": "crop_flip+mixup", "flip": False, "crop_padding": 1,
        "mixup_alpha": 1.0, "mixup_portion": 0.5,
    }
    distill = report["splits"]["distill"]
    assert 0.0 <= distill["agreement"] <= 1.0 and distill["predictive_kl"] >= 0.0
    assert "teacher_cache" not in os.listdir(os.path.join(saved, "digits"))  # stochastic: no cache


MNIST1D = ["--dataset=mnist1d:num_train=300,num_test=100", "--teacher_arch=mnist1d_cnn",
           "--student_arch=mnist1d_cnn", "--members=2", "--teacher_epochs=1", "--epochs=1",
           "--batch_size=100", "--verbose=0"]


def test_distill_on_mnist1d_with_a_signal_policy_reports_the_control(tmp_path):
    saved, data = str(tmp_path / "saved"), f"--data_dir={tmp_path / 'data'}"
    flags = [*MNIST1D, "--policy=shift+mixup+noise", data, f"--saved_models_dir={saved}"]
    result = _run("distill", *flags)
    run_dir = os.path.join(saved, "mnist1d_num_train_300_num_test_100", "distill",
                           _run_name(*flags))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert report["dataset"]["input_shape"] == [40, 1]
    assert report["dataset"]["settings"]["num_train"] == 300
    assert report["config"]["policy_settings"] == {
        "policy": "shift+mixup+noise", "shift_padding": 5, "noise_std": 0.1,
        "mixup_alpha": 1.0, "mixup_portion": 1.0}
    for split in ("train", "test", "distill"):
        row = report["splits"][split]
        for name in ("control_agreement", "control_predictive_kl", "student_nll",
                     "teacher_nll", "control_nll"):
            assert np.isfinite(row[name]), (split, name)
    assert not report["control"]["reused"] and "controls" in report["control"]["path"]
    assert "control_agreement" in result.stdout
    assert "## Distilled student and its references" in open(report["artifacts"]["report_md"]).read()

    # Another distillation of the same student reuses the control; --nocontrol skips it.
    _run("distill", *MNIST1D, "--temperature=2", data, f"--saved_models_dir={saved}")
    off = [*MNIST1D, "--nocontrol", data, f"--saved_models_dir={saved}"]
    _run("distill", *off)
    with open(os.path.join(saved, "mnist1d_num_train_300_num_test_100", "distill",
                           _run_name(*off), "report.json")) as f:
        report = json.load(f)
    assert report["control"] is None and "control_agreement" not in report["splits"]["test"]
    (control,) = os.listdir(os.path.join(saved, "mnist1d_num_train_300_num_test_100", "controls"))
    assert control.startswith("mnist1d_cnn-")


def test_image_stages_on_mnist1d_are_refused_before_training(tmp_path):
    saved = tmp_path / "saved"
    result = _run("distill", *MNIST1D, "--policy=shift+rotation", f"--data_dir={tmp_path}",
                  f"--saved_models_dir={saved}", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert ("stage 'rotation' applies to images; the inputs are signals of shape (40, 1)"
            in result.stderr)
    assert not saved.exists() or not any(saved.rglob("*.keras"))


def test_train_gan_on_mnist1d_then_distill_on_its_samples(tmp_path):
    saved, data = str(tmp_path / "saved"), f"--data_dir={tmp_path / 'data'}"
    teacher = [f for f in MNIST1D if f.split("=")[0] in (
        "--dataset", "--teacher_arch", "--members", "--teacher_epochs", "--batch_size")]
    _run("train_gan", *teacher, "--epochs=1", "--num_samples=64", "--verbose=0", data,
         f"--saved_models_dir={saved}")
    gan_dir = os.path.join(saved, "mnist1d_num_train_300_num_test_100", "gan")
    with open(os.path.join(gan_dir, "metrics.json")) as f:
        assert sum(json.load(f)["class_histogram"]) == 64
    assert os.path.isfile(os.path.join(gan_dir, "samples.png"))
    flags = [*MNIST1D, "--policy=gan", data, f"--saved_models_dir={saved}"]
    _run("distill", *flags)
    with open(os.path.join(saved, "mnist1d_num_train_300_num_test_100", "distill",
                           _run_name(*flags), "report.json")) as f:
        report = json.load(f)
    assert [m["reused"] for m in report["teacher_members"]] == [True, True]
    assert report["config"]["synthetic_source"] == "generator generator"
    assert np.isfinite(report["splits"]["distill"]["control_agreement"])


def test_train_teachers_saves_members_with_metrics(tmp_path):
    out = str(tmp_path / "teachers")
    result = _run("train_teachers", "--arch=mlp", "--members=2", "--epochs=1", "--verbose=0",
                  f"--output_dir={out}")
    (folder,) = os.listdir(out)
    assert sorted(os.listdir(os.path.join(out, folder))) == [
        "member_0.json", "member_0.keras", "member_1.json", "member_1.keras"]
    assert "ensemble of 2: test accuracy" in result.stdout


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--alpha=1.5", "alpha"),
        ("--temperature=0", "temperature must be > 0; got 0.0"),
        ("--student_arch=vgg", "Unknown model 'vgg'"),
        ("--dataset=npz:/nonexistent.npz", "no file at '/nonexistent.npz'"),
        ("--dataset=bogus", "Unknown dataset 'bogus'"),
        ("--policy=crop+mixup", "Unknown policy stage(s) ['crop'] in 'crop+mixup'"),
        ("--policy=grayscale", "Dataset 'digits': Policy 'grayscale': stages ['grayscale'] need RGB"),
        ("--policy=gan", "Train one with `python -m launch.train_gan --dataset=digits`"),
        ("--cached_views=2", "policy 'identity' is static"),
        ("--mixup_portion=2", "mixup_portion"),
        ("--student_init=interpolate:0.5", "needs a one-member teacher of the student's architecture"),
        ("--student_init=warm", "Unknown student_init 'warm'"),
        ("--policy=noise --noise_std=inf", "noise_std must be a finite number; got inf"),
        ("--policy=mixup --mixup_alpha=inf", "mixup_alpha must be a finite number; got inf"),
        ("--lr=inf", "lr must be a finite number; got inf"),
        ("--teacher_lr=inf", "teacher_lr must be a finite number; got inf"),
        ("--weight_decay=inf", "weight_decay must be a finite number; got inf"),
        ("--temperature=inf", "temperature must be a finite number; got inf"),
        ("--seed=-1", "flag --seed=-1: -1 is not an integer in the range [0, 2147483647]"),
        ("--student_arch=lstm", "student_arch='lstm' reads tokens, but dataset 'digits' holds "
                                "images"),
        ("--teacher_arch=mnist1d_cnn", "teacher_arch='mnist1d_cnn' reads signals"),
    ],
)
def test_bad_flags_fail_before_training(tmp_path, flag, message):
    saved = tmp_path / "saved"
    result = _run("distill", *flag.split(), f"--saved_models_dir={saved}", check=False)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr  # a usage error, not a crash
    assert not saved.exists() or not any(saved.rglob("*.keras"))


@pytest.mark.skipif(bool(shutil.which("nvidia-smi")),
                    reason="with GPUs, the Slurm resolver runs and needs a Slurm job")
@pytest.mark.parametrize("app", ["distill", "sweep"])
def test_a_strategy_this_machine_cannot_make_is_a_usage_error(tmp_path, app):
    experiment = ["--experiment=self_distillation", "--scale=smoke"] if app == "sweep" else []
    result = subprocess.run(
        [sys.executable, "-m", f"launch.{app}", *experiment, "--strategy=multi_worker",
         f"--saved_models_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
        env={**{name: value for name, value in os.environ.items() if name != "TF_CONFIG"},
             "TF_CPP_MIN_LOG_LEVEL": "2", "SLURM_JOB_ID": "7"})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert ("--strategy=multi_worker: TensorFlow's SlurmClusterResolver assigns GPUs"
            in result.stderr)
    assert not any(tmp_path.rglob("*.keras"))


def test_unusable_data_and_folders_are_usage_errors_before_training(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    result = _run("distill", *TINY, f"--dataset=npz:{empty}",
                  f"--saved_models_dir={tmp_path}", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"'{empty}' (0 bytes) is not a readable NumPy .npz archive" in result.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _run("distill", *TINY, f"--saved_models_dir={blocker}/saved", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"Cannot write to '{blocker}/saved/digits/distill/" in result.stderr


def test_helpfull_documents_the_flags():
    out = _run("distill", "--helpfull", check=False).stdout  # absl exits 1 after help
    for flag in ("--alpha", "--temperature", "--members", "--teacher_arch", "--student_arch",
                 "--epochs", "--batch_size", "--optimizer", "--lr", "--seed", "--output_dir",
                 "--policy", "--flip", "--mixup_alpha", "--mixup_portion", "--synthetic_fraction",
                 "--synthetic_temperature", "--generator", "--teacher_cache", "--cached_views",
                 "--cache_dir", "--student_init", "--student_init_from"):
        assert flag in out


@pytest.mark.parametrize("app", ["distill", "sweep", "train_teachers", "train_gan", "evaluate"])
def test_help_lists_the_apps_own_flags_first(app):
    short = _run(app, "--help", check=False).stdout
    assert f"launch/{app}.py:" in short and "--verbose" in short or app == "evaluate"
    assert "--dataset" in short
    full = _run(app, "--helpfull", check=False).stdout
    assert full.index(f"launch/{app}.py:") < full.index("absl.app:")


def test_usage_errors_come_first_and_say_what_applies_to_the_app(tmp_path):
    saved = f"--saved_models_dir={tmp_path}"
    for args, message in [
        (["--seeds=0,0"], "error: --seeds=0,0 repeats [0]; each seed runs once."),
        ([f"--output_dir={tmp_path}/run"], "error: --output_dir is set by the sweep for each "
                                            "run"),
        (["--seed=3"], "error: --seed is set by the sweep for each run; pass --seeds=0,1,2."),
    ]:
        result = _run("sweep", "--experiment=self_distillation", "--dry_run", saved, *args,
                      check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if not line.startswith(("WARNING",
                                                                                    "I0000"))]
        # The error, then where the help is: no page of help before it.
        assert len(lines) == 2 and lines[0].startswith(message)
        assert lines[1] == "Run `python -m launch.sweep --helpshort` for the flags."
    # A folder problem names the flags that choose folders in a sweep.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _run("sweep", f"--flagfile={_tiny_sweep(tmp_path)}",
                  f"--saved_models_dir={blocker}/saved", check=False)
    assert "Cannot write to" in result.stderr
    assert "Folders are chosen by --experiments_dir, --saved_models_dir." in result.stderr


def _tiny_sweep(tmp_path):
    flagfile = tmp_path / "tiny.cfg"
    flagfile.write_text("\n".join([*TINY, "--grid=members=1", "--seeds=0"]))
    return flagfile


def test_an_alias_and_its_flag_together_are_refused(tmp_path):
    result = _run("train_teachers", "--arch=mlp", "--teacher_arch=cnn",
                  f"--output_dir={tmp_path}", check=False)
    assert result.returncode == 1
    assert "error: --arch is another name for --teacher_arch; pass one of them, not both." \
        in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_single_class_dataset_is_a_usage_error(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, x_train=np.zeros((8, 4)), y_train=np.zeros(8, int), x_test=np.zeros((4, 4)),
             y_test=np.zeros(4, int))
    result = _run("distill", *TINY, f"--dataset=npz:{path}", f"--saved_models_dir={tmp_path}",
                  check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a classifier needs at least 2 classes; every label is 0." in result.stderr


def test_distill_on_synthetic_inputs_from_a_generator_file(tmp_path):
    import keras

    generator = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(64, activation="sigmoid"),
         keras.layers.Reshape((8, 8, 1))], name="tiny_generator")
    path = str(tmp_path / "generator.keras")
    generator.save(path)
    saved = str(tmp_path / "saved")
    _run("distill", *TINY, "--policy=gan", f"--generator={path}", "--synthetic_fraction=0.25",
         "--synthetic_temperature=2", f"--saved_models_dir={saved}")
    run_dir = os.path.join(saved, "digits", "distill", _run_name(
        *TINY, "--policy=gan", f"--generator={path}", "--synthetic_fraction=0.25",
        "--synthetic_temperature=2"))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert report["config"]["synthetic_source"] == "generator tiny_generator"
    assert report["config"]["policy_settings"] == {
        "policy": "gan", "synthetic_fraction": 0.25, "synthetic_temperature": 2.0}
    assert set(report["splits"]) == {"train", "test", "distill"}


def test_train_gan_then_distill_on_its_samples(tmp_path):
    saved = str(tmp_path / "saved")
    teacher = ["--teacher_arch=mlp", "--members=2", "--teacher_epochs=1", "--batch_size=128"]
    result = _run("train_gan", *teacher, "--epochs=2", "--gan_batch_size=128",
                  "--num_samples=64", "--verbose=0", f"--saved_models_dir={saved}")
    gan_dir = os.path.join(saved, "digits", "gan")
    assert sorted(os.listdir(gan_dir)) == [
        "discriminator.keras", "generator.json", "generator.keras", "metrics.json", "samples.png"]
    with open(os.path.join(gan_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["teacher_frechet_distance"] >= 0 and metrics["noise_frechet_distance"] > 0
    assert len(metrics["class_histogram"]) == 10 and sum(metrics["class_histogram"]) == 64
    assert "not Inception FID" in metrics["feature_space"]
    assert '"teacher_frechet_distance"' in result.stdout

    # The teachers train_gan trained are the ones distill reuses, and the
    # generator is found where train_gan put it.
    _run("distill", *TINY, "--policy=mixup+gan", "--synthetic_fraction=0.5",
         f"--saved_models_dir={saved}")
    run_dir = os.path.join(saved, "digits", "distill", _run_name(
        *TINY, "--policy=mixup+gan", "--synthetic_fraction=0.5"))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert [m["reused"] for m in report["teacher_members"]] == [True, True]
    assert report["config"]["synthetic_source"] == "generator generator"
    assert set(report["splits"]) == {"train", "test", "distill"}


@pytest.mark.parametrize(
    "flag, message",
    [("--beta_1=1", "beta_1 must be in [0, 1); got 1.0"), ("--gan_lr=0", "lr must be > 0")],
)
def test_train_gan_bad_flags_fail_before_training(tmp_path, flag, message):
    result = _run("train_gan", flag, f"--saved_models_dir={tmp_path}", check=False)
    assert result.returncode != 0 and message in result.stderr
    assert not any(tmp_path.rglob("*.keras"))


def test_distill_runs_mirrored_in_bfloat16(tmp_path):
    saved = str(tmp_path / "saved")
    _run("distill", *TINY, "--strategy=mirrored", "--cpu_replicas=2",
         "--precision=mixed_bfloat16", "--jit_compile", f"--saved_models_dir={saved}")
    run_dir = os.path.join(saved, "digits", "distill",
                           _run_name(*TINY, "--precision=mixed_bfloat16"))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    assert report["config"]["replicas"] == 2
    assert report["config"]["jit_compiled"] is False  # XLA cannot span the 2 devices
    runtime = ("strategy", "cpu_replicas", "precision", "jit_compile", "deterministic",
               "backup_dir")
    assert {name: report["config"][name] for name in runtime} == {
        "strategy": "mirrored", "cpu_replicas": 2, "precision": "mixed_bfloat16",
        "jit_compile": True, "deterministic": False, "backup_dir": None}
    assert 0.0 <= report["splits"]["test"]["agreement"] <= 1.0
    assert not os.path.exists(os.path.join(run_dir, "backup"))


@pytest.mark.parametrize("flags, message", [
    (["--cpu_replicas=2"], "cpu_replicas must be a positive integer, with strategy 'mirrored'"),
    (["--precision=float64"], "precision"),
])
def test_bad_runtime_flags_fail_before_training(tmp_path, flags, message):
    result = _run("distill", *TINY, *flags, f"--saved_models_dir={tmp_path}", check=False)
    assert result.returncode != 0 and message in result.stderr
    assert not os.path.exists(os.path.join(tmp_path, "digits"))
