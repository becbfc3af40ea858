import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs for the MirroredStrategy tests; this must run before
# TensorFlow initializes its devices, so it lives here, not in a fixture.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    import keras_kd

    doctest_namespace.update(np=np, keras_kd=keras_kd)


@pytest.fixture(scope="session")
def mirrored():
    """The two-replica MirroredStrategy the whole session shares (as
    `get_strategy` returns it): strategies made one after another in a
    process can reuse collective instance keys, and a collective mismatch
    then aborts every later one."""
    import keras_kd

    return keras_kd.distribute.get_strategy("mirrored", cpu_replicas=2)


@pytest.fixture(scope="session")
def digits():
    import keras_kd

    return keras_kd.data.load("digits")
