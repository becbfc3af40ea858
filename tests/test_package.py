import subprocess
import sys

import keras_kd


def test_public_api():
    assert {"Distiller", "Ensemble", "metrics", "losses", "models", "data"} <= set(keras_kd.__all__)
    for name in ("Agreement", "PredictiveKL", "ExpectedCalibrationError"):
        assert hasattr(keras_kd.metrics, name)


def test_import_without_tensorflow_names_the_extra():
    script = "import sys; sys.modules['tensorflow'] = None; import keras_kd"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr and "keras_kd[cpu]" in result.stderr
