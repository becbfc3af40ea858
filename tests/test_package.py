import os
import subprocess
import sys

import numpy as np
import pytest

import keras_kd


def test_public_api():
    assert {"Distiller", "Ensemble", "metrics", "losses", "models", "data"} <= set(keras_kd.__all__)
    for name in ("Agreement", "PredictiveKL", "ExpectedCalibrationError"):
        assert hasattr(keras_kd.metrics, name)


@pytest.mark.slow
def test_import_without_tensorflow_names_the_extra():
    script = "import sys; sys.modules['tensorflow'] = None; import keras_kd"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "keras_kd[cpu]" in result.stderr


@pytest.mark.slow
def test_other_keras_backends_are_refused():
    # Another backend needs its framework installed; stand in for one by making
    # Keras report it.
    script = "import keras; keras.backend.backend = lambda: 'jax'; import keras_kd"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode != 0
    assert "the active backend is 'jax'. Set KERAS_BACKEND=tensorflow" in result.stderr


def test_three_tuples_tell_weights_from_teacher_logits():
    x, y = np.zeros((4, 2)), np.zeros(4, "int32")
    assert keras_kd.batch.unpack((x, y, np.ones(4))).sample_weight is not None
    assert keras_kd.batch.unpack((x, y, np.ones((4, 1)))).sample_weight is not None
    assert keras_kd.batch.unpack((x, y, np.ones((4, 3)))).teacher_logits is not None


def test_the_keras_internals_we_use_are_those_of_the_tested_keras():
    # keras_kd.multi_worker overrides Keras' private trainer methods and
    # keras_kd.data.augment subclasses SeedGenerator around its constructor; both
    # were written against Keras 3.15. Another version must be checked by hand
    # (run `make test-all`, the multi-worker tests above all), then this pin moved.
    import keras

    tested = "3.15"
    assert keras.__version__.startswith(tested + "."), (
        f"keras {keras.__version__} is installed; keras_kd's multi-worker fix "
        f"(keras_kd/multi_worker.py) and batch seeds (keras_kd/data/augment.py) were "
        f"tested on keras {tested}. Check them against this version, then update "
        "this test and setup.cfg's pin."
    )
    from keras.src.backend.tensorflow import trainer

    for name in ("_maybe_symbolic_build", "_make_function", "make_train_function"):
        assert hasattr(trainer.TensorFlowTrainer, name), name


def test_a_killed_writers_staging_folders_are_removed_by_the_next_write(tmp_path):
    import multiprocessing
    import os

    from keras_kd import export

    def leave_staging(folder):
        with export.atomic_path(os.path.join(folder, "model")) as staged:
            os.makedirs(staged)
            os._exit(0)  # killed in the middle of an export

    context = multiprocessing.get_context("fork")
    writer = context.Process(target=leave_staging, args=(str(tmp_path),))
    writer.start()
    writer.join()
    left = [name for name in os.listdir(tmp_path) if name.startswith(".staging-")]
    assert len(left) == 1 and f"-{writer.pid}-" in left[0]
    running = tmp_path / f".staging-{export.processes.this_host()}-{os.getpid()}-abcd1234"
    running.mkdir()  # a writer that still runs (this one): kept
    export.write_text("done", str(tmp_path / "report.md"))
    assert sorted(os.listdir(tmp_path)) == [running.name, "report.md"]
