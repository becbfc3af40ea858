"""Distribution strategies by name, and the chief/worker split.

`get_strategy(name)` picks a `tf.distribute` strategy; the global batch size
is always the one a run asks for, and each replica gets its share. Under
`multi_worker`, every worker runs the same program: every worker takes part
in every collective (training, and reading metric state), the chief writes
the run's files, and the other workers write theirs to private scratch
folders (`worker_dir`), so nothing they write can clash.
"""

import os
import shutil
import tempfile

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def get_strategy(name="default", cpu_replicas=None, cluster="auto"):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: `"default"` (one device), `"mirrored"` (all local GPUs, or
            `cpu_replicas` logical CPU devices), `"multi_worker"`
            (`MultiWorkerMirroredStrategy`, the cluster read from `TF_CONFIG`
            or from Slurm's environment) or `"tpu"`.
        cpu_replicas: for `"mirrored"` on a machine without GPUs (or to test
            one), the number of logical CPU devices to mirror over; must be
            set before TensorFlow initializes its devices.
        cluster: for `"multi_worker"`: `"auto"` (`TF_CONFIG` if set, else
            Slurm when `SLURM_JOB_ID` is set), `"tf_config"` or `"slurm"`.

    A strategy is made once per process and returned again for the same
    arguments: collectives of two strategies in one process can clash.

    Example:

    >>> keras_kd.distribute.get_strategy("default").num_replicas_in_sync
    1
    """
    key = (name, cpu_replicas, cluster)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _make_strategy(name, cpu_replicas, cluster)
    return _STRATEGIES[key]


_STRATEGIES = {}  # made once per process: see get_strategy


def _make_strategy(name, cpu_replicas, cluster):
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}.")
    if cpu_replicas is not None:
        if name != "mirrored":
            raise ValueError(
                f"cpu_replicas={cpu_replicas} applies to the 'mirrored' strategy; "
                f"got strategy {name!r}."
            )
        if isinstance(cpu_replicas, bool) or not isinstance(cpu_replicas, int) \
                or cpu_replicas < 1:
            raise ValueError(
                f"cpu_replicas must be a positive integer; got {cpu_replicas!r}."
            )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if cpu_replicas:
            return tf.distribute.MirroredStrategy(_logical_cpus(cpu_replicas))
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=_cluster_resolver(cluster)
        )
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _logical_cpus(count):
    """The names of `count` logical CPU devices, made if not there yet."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    if tf.config.get_logical_device_configuration(cpu) is None:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * count
            )
        except RuntimeError:
            pass  # TensorFlow already started; the check below explains.
    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < count:
        raise ValueError(
            f"cpu_replicas={count}: TensorFlow has already set up {len(devices)} "
            "logical CPU device(s); choose the strategy before any other "
            "TensorFlow work."
        )
    return [device.name for device in devices[:count]]


def _cluster_resolver(cluster):
    if cluster not in ("auto", "tf_config", "slurm"):
        raise ValueError(
            f"Unknown cluster {cluster!r}; expected 'auto', 'tf_config' or 'slurm'."
        )
    if cluster == "slurm" or (
        cluster == "auto" and "TF_CONFIG" not in os.environ and "SLURM_JOB_ID" in os.environ
    ):
        # Counted here: the resolver would run nvidia-smi, absent on CPU nodes.
        gpus = len(tf.config.list_physical_devices("GPU"))
        if not gpus:
            raise ValueError(
                "TensorFlow's SlurmClusterResolver assigns GPUs to tasks and fails on "
                "nodes without any; on CPU nodes, set TF_CONFIG for each task instead."
            )
        return tf.distribute.cluster_resolver.SlurmClusterResolver(gpus_per_node=gpus)
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def is_multi_worker(strategy):
    """Whether `strategy` spans several workers (processes or hosts)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    tasks = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(tasks.get(job, [])) for job in ("chief", "worker")) > 1


def is_chief(strategy=None):
    """Whether this process writes the run's files (always, on one worker).

    The chief is the task of type `chief`, or worker 0 of a cluster without one.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


_SCRATCH_DIRS = []


def worker_dir(path, strategy=None):
    """Where this process writes what belongs at `path`.

    The chief writes at `path`; any other worker gets a private scratch folder
    (removed by `cleanup_worker_dirs`), so that every worker can run every
    write — saving reads metric state through collectives all workers must
    join — while only the chief's files are kept.
    """
    if path is None or is_chief(strategy):
        return path
    scratch = tempfile.mkdtemp(prefix="keras_kd-worker-")
    _SCRATCH_DIRS.append(scratch)
    return os.path.join(scratch, os.path.basename(os.path.normpath(path)) or "out")


def worker_backup_dir(backup_dir, strategy=None):
    """This process's backup folder: `backup_dir` on the chief.

    Other workers back up to `<backup_dir>/worker-<index>`: a backup must
    outlive the process to be restored, and must not clash with the chief's.
    """
    if backup_dir is None or is_chief(strategy):
        return backup_dir
    resolver = (strategy or tf.distribute.get_strategy()).cluster_resolver
    return os.path.join(backup_dir, f"{resolver.task_type}-{resolver.task_id}")


def cleanup_worker_dirs():
    """Removes the scratch folders `worker_dir` made in this process."""
    while _SCRATCH_DIRS:
        shutil.rmtree(_SCRATCH_DIRS.pop(), ignore_errors=True)


def agreed(value, strategy=None):
    """`value` (a number) if every worker holds the same, else `None`."""
    strategy = strategy or tf.distribute.get_strategy()
    if not is_multi_worker(strategy):
        return value
    per_replica = strategy.run(lambda: tf.constant(float(value), tf.float64))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return value if float(total) == float(value) * strategy.num_replicas_in_sync else None


def all_workers_agree(flags, strategy=None):
    """For each flag, whether it is true on every worker.

    Workers decide together what to reuse (a finished teacher, a backup):
    one that trains while another skips would wait forever on a collective.
    """
    flags = [bool(flag) for flag in flags]
    strategy = strategy or tf.distribute.get_strategy()
    if not flags or not is_multi_worker(strategy):
        return flags
    votes = tf.constant([1.0 if flag else 0.0 for flag in flags])
    per_replica = strategy.run(lambda: tf.identity(votes))
    totals = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
    return [bool(total == strategy.num_replicas_in_sync) for total in totals.numpy()]
