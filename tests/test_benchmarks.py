import json
import os
import subprocess
import sys
import pytest

# Each test runs a benchmark app in a fresh process.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--steps=1", "--pipeline_batches=2", "--repeats=1", "--examples=48", "--batch_size=16", "--image_size=8",
        "--student=mlp", "--teacher=mlp"]


def _run(*flags):
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", *flags], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def test_pipeline_benchmark_prints_its_figures_as_json():
    result = _run(*TINY, "--policies=identity,crop_flip+mixup,gan")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures["policies"]) == {"identity", "crop_flip+mixup", "gan"}
    for row in figures["policies"].values():
        assert row["pipeline_batches_per_s"] > 0 and row["step_batches_per_s"] > 0
    assert figures["policies"]["identity"]["teacher_cached"] is True
    assert figures["cached_step_vs_student_step"] > 0


def test_pipeline_benchmark_refuses_a_bad_policy_before_timing():
    result = _run(*TINY, "--policies=identity,crop")
    assert result.returncode != 0
    assert "Unknown policy stage(s) ['crop']" in result.stderr
    assert "identity:" not in result.stdout


def test_distill_throughput_prints_images_per_second_as_json():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.distill_throughput", "--steps=1", "--repeats=1",
         "--warmup=1", "--members=2", "--teacher=mlp", "--student=mlp", "--image_size=8",
         "--batch_size=8", "--classes=10", "--steps_per_execution=2",
         "--precision=mixed_bfloat16"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("student_step", "teacher_forward", "distill_step", "distill_step_cached",
                 "keras_list_step", "keras_distillation_step", "overhead",
                 "cached_vs_student_step", "distill_step_vs_keras_distillation"):
        assert figures[name] > 0
    assert figures["settings"]["precision"] == "mixed_bfloat16"
    assert figures["settings"]["steps_per_execution"] == 2


def test_backup_benchmark_compares_the_state_with_the_full_weights():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.backup", "--teacher=mlp", "--student=mlp",
         "--members=2", "--repeats=1"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["state_s"] > 0 and figures["full_weights_s"] > 0
    assert figures["state_bytes"] < figures["full_weights_bytes"]


def test_mnist1d_zoo_prints_accuracies_beside_the_papers(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.mnist1d_zoo", "--archs=mnist1d_mlp,mnist1d_cnn",
         "--epochs=1", "--seeds=0,1", "--dataset=mnist1d:num_train=200,num_test=100",
         f"--data_dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures["models"]) == {"mnist1d_mlp", "mnist1d_cnn"}
    assert figures["models"]["mnist1d_cnn"]["parameters"] == 5210
    for row in figures["models"].values():
        assert 0.0 <= row["test_accuracy"] <= 1.0 and row["train_s"] > 0
        assert row["paper_test_accuracy"] is None  # not the paper's dataset size


def test_study_run_benchmark_times_the_bare_loop_the_distiller_and_the_job(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.study_run", "--dataset=mnist1d:num_train=100,num_test=50",
         f"--data_dir={tmp_path / 'data'}", "--members=1", "--teacher_epochs=1", "--epochs=2",
         "--teacher_arch=mnist1d_mlp", "--student_arch=mnist1d_mlp", "--repeats=1",
         "--sweep_runs=2", "--sweep_workers=1,2", f"--saved_models_dir={tmp_path / 'saved'}"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["steps"] == 2 * 2  # 100 signals at batch 64: 2 steps an epoch
    assert figures["bare_s"] > 0 and figures["distiller_s"] > 0 and figures["job_s"] > 0
    split = figures["job_split"]
    assert set(split) == {"startup_s", "teachers_s", "control_s", "distillation_set_s",
                          "training_steps_s", "fidelity_s", "backups_s", "evaluate_s",
                          "export_s"}
    assert all(value >= 0 for value in split.values()) and split["fidelity_s"] > 0
    assert figures["job_vs_bare"] == pytest.approx(figures["job_s"] / figures["bare_s"], rel=0.01)
    assert figures["interleaved_distiller_step_vs_bare_step"] == pytest.approx(
        figures["interleaved_distiller_step_ms"] / figures["interleaved_bare_step_ms"], rel=0.01)
    for workers in (1, 2):
        assert figures[f"sweep_{workers}_workers_per_run_vs_bare"] == pytest.approx(
            figures[f"sweep_{workers}_workers_s"] / (2 * figures["bare_s"]), rel=0.01)
    assert len(os.listdir(tmp_path / "saved" / "sweep_2" / "sweep" / "runs")) == 2
