"""Real multi-worker training: two processes on 127.0.0.1 joined by TF_CONFIG."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.test_launch import _run_name

# Real two-process training on 127.0.0.1.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(ROOT, "tests", "multi_worker_job.py")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(tf_config=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def run_workers(command, count=2, timeout=300):
    """Runs `command` (or `command(i)` on worker i) once per worker of a
    loopback cluster; returns the results."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(count)]
    processes = [
        subprocess.Popen(
            command(i) if callable(command) else command, cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_env({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}),
        )
        for i in range(count)
    ]
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=timeout)
            results.append((process.returncode, stdout, stderr))
    finally:
        for process in processes:
            process.kill()
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    return results


def test_two_workers_train_the_distiller_like_one_process(tmp_path):
    out = str(tmp_path / "weights.npz")
    run_workers([sys.executable, JOB, out, "multi_worker"])
    single = str(tmp_path / "single.npz")
    subprocess.run([sys.executable, JOB, single, "default"], cwd=ROOT, env=_env(), check=True,
                   capture_output=True)
    chief, other = (np.load(f"{out}.worker{i}.npz") for i in (0, 1))
    alone = np.load(f"{single}.single.npz")
    assert int(chief["replicas"]) == int(other["replicas"]) == 2
    weight_names = sorted(name for name in chief.files if name.startswith("w"))
    assert weight_names and weight_names == sorted(n for n in alone.files if n.startswith("w"))
    for name in weight_names:
        np.testing.assert_array_equal(chief[name], other[name])
        np.testing.assert_allclose(chief[name], alone[name], rtol=1e-4, atol=2e-5)
    for name in ("log_loss", "log_soft_loss", "log_agreement", "log_predictive_kl",
                 "log_student_accuracy"):
        np.testing.assert_allclose(chief[name], alone[name], rtol=1e-4, atol=1e-6)
    # Worker 0 is the chief (there is no "chief" task), and it alone wrote the shared output.
    assert bool(chief["chief"]) and not bool(other["chief"])
    np.testing.assert_array_equal(np.load(out)["w0"], chief["w0"])


@pytest.mark.parametrize("model", ["teacher", "gan"])
def test_two_workers_train_teachers_and_gans(tmp_path, model):
    out = str(tmp_path / "weights.npz")
    run_workers([sys.executable, JOB, out, "multi_worker", model])
    chief, other = (np.load(f"{out}.worker{i}.npz") for i in (0, 1))
    names = [name for name in chief.files if name.startswith("w")]
    for name in names:
        np.testing.assert_array_equal(chief[name], other[name])
    logs = [name for name in chief.files if name.startswith("log_")]
    assert logs and all(np.isfinite(chief[name]).all() for name in logs)
    if model == "teacher":
        single = str(tmp_path / "single.npz")
        subprocess.run([sys.executable, JOB, single, "default", model], cwd=ROOT, env=_env(),
                       check=True, capture_output=True)
        alone = np.load(f"{single}.single.npz")
        for name in names:
            np.testing.assert_allclose(chief[name], alone[name], rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(chief["log_loss"], alone["log_loss"], rtol=1e-4)


# SGD: Adam divides by the root of tiny second moments, which turns float
# noise between the runs into visible weight differences.
TINY = ["--teacher_arch=mlp", "--members=2", "--teacher_epochs=1", "--student_arch=mlp",
        "--epochs=2", "--batch_size=128", "--verbose=0", "--optimizer=sgd", "--lr=0.05"]


def _files(root):
    """The files under `root`; the teacher cache's key (a digest of the teachers'
    weights, equal only within float tolerance across the runs) as `KEY`."""
    paths = (
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _, names in os.walk(root) for name in names
    )
    return sorted(re.sub(r"teacher_cache/[0-9a-f]+/", "teacher_cache/KEY/", p) for p in paths)


def _student_weights(run_dir):
    import keras

    model = keras.saving.load_model(os.path.join(run_dir, "student.keras"), compile=False)
    return model.get_weights()


def test_launch_distill_on_two_workers_writes_one_run_from_the_chief(tmp_path):
    multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
    results = run_workers([sys.executable, "-m", "launch.distill", *TINY,
                           "--strategy=multi_worker", f"--saved_models_dir={multi}"])
    subprocess.run([sys.executable, "-m", "launch.distill", *TINY, f"--saved_models_dir={single}"],
                   cwd=ROOT, env=_env(), check=True, capture_output=True)
    # The chief wrote exactly the files a one-process run writes; the other
    # worker's writes went to scratch folders, since removed.
    assert _files(multi) == _files(single)
    assert not any("backup" in path or "worker" in path for path in _files(multi))
    run = os.path.join("digits", "distill", _run_name(*TINY))
    with open(os.path.join(multi, run, "report.json")) as f:
        report = json.load(f)
    assert report["config"]["replicas"] == 2
    assert report["config"]["strategy"] == "multi_worker"
    for a, b in zip(_student_weights(os.path.join(multi, run)),
                    _student_weights(os.path.join(single, run))):
        # Teachers and student both trained across workers: float tolerance compounds.
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert all("| test |" in stdout for _, stdout, _ in results)


def test_a_sweep_of_the_papers_experiment_on_two_workers_that_share_no_files(tmp_path):
    # A loopback cluster whose workers see different folders, as hosts without a shared file
    # system do; on TFDS mock CIFAR-100, one section 6.2 run (ResNet-20-LN) at smoke scale.
    from tests.test_text import MOCK_RUN

    def sweep(task):
        return [sys.executable, "-c", MOCK_RUN.format(app="sweep"),
                "--experiment=cifar100_optimization", "--scale=smoke", "--shard=0/5",
                "--strategy=multi_worker", "--noreference", "--nocontrol", "--verbose=0",
                f"--saved_models_dir={tmp_path / f'worker{task}'}"]

    for attempt in range(2):
        results = run_workers(sweep)
        # The second time the chief finds the run finished and the other worker does not:
        # both train it again (one skipping while the other trains would hang on a collective).
        assert all(": finished earlier" not in stdout and "[1/1] optimizer=sgd,epochs=300"
                   in stdout for _, stdout, _ in results), attempt
        chief_files, other_files = (_files(tmp_path / f"worker{task}") for task in (0, 1))
        run = os.path.join("experiments", "cifar100_optimization-smoke", "runs",
                           "optimizer=sgd,epochs=300,seed=0")
        assert os.path.join(run, "result.json") in chief_files
        # The sweep's rows, the reuse folder and the run's files: the chief's alone.
        assert other_files == [], other_files
    with open(tmp_path / "worker0" / run / "report.json") as f:
        report = json.load(f)
    assert report["config"]["strategy"] == "multi_worker" and report["config"]["replicas"] == 2
    assert report["config"]["dataset"] == "tfds:cifar100"
