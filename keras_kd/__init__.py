"""keras_kd: knowledge distillation for Keras 3, with fidelity as a result.

Public API: `Distiller`, `Ensemble`, and the modules `metrics`, `losses`,
`models`, `data`, `distribute`, `runtime`, `callbacks`, `evaluation`, `export`,
`training`, `trace_cache`, `initialization`, `loss_surface`, `config`, `jobs`, `experiments`
and `gan`.
"""

try:
    import tensorflow as _tensorflow  # noqa: F401
except ImportError as error:
    raise ImportError(
        "keras_kd needs TensorFlow 2.21, which is not installed. Install the "
        "extra for your machine: `pip install 'keras_kd[cpu]'`, or "
        "`pip install 'keras_kd[gpu]'` for NVIDIA GPUs."
    ) from error

import keras as _keras

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_kd runs on Keras' TensorFlow backend; the active backend is "
        f"{_keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow."
    )

from keras_kd import backup
from keras_kd import batch
from keras_kd import callbacks
from keras_kd import config
from keras_kd import data
from keras_kd import digests
from keras_kd import distribute
from keras_kd import evaluation
from keras_kd import experiments
from keras_kd import export
from keras_kd import gan
from keras_kd import initialization
from keras_kd import jobs
from keras_kd import loss_surface
from keras_kd import losses
from keras_kd import metrics
from keras_kd import models
from keras_kd import optimizers
from keras_kd import runtime
from keras_kd import seeds
from keras_kd import trace_cache
from keras_kd import training
from keras_kd.distiller import Distiller
from keras_kd.ensemble import Ensemble

from keras_kd.version import __version__  # noqa: E402,F401

__all__ = [
    "Distiller",
    "Ensemble",
    "backup",
    "batch",
    "callbacks",
    "config",
    "data",
    "digests",
    "distribute",
    "evaluation",
    "experiments",
    "export",
    "gan",
    "initialization",
    "jobs",
    "loss_surface",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "runtime",
    "seeds",
    "trace_cache",
    "training",
]
