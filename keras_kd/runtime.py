"""`Runtime`: how a job runs — strategy, precision, XLA, determinism, backups."""

import dataclasses
import logging
import os

import keras
import tensorflow as tf

from keras_kd import distribute
from keras_kd.config import Config
from keras_kd.config import setting

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class Runtime(Config):
    """The settings of a job that do not change what it computes, only how.

    Args:
        strategy: a name from `keras_kd.distribute.STRATEGIES`.
        cpu_replicas: logical CPU devices for `"mirrored"` without GPUs.
        precision: `"float32"`, `"mixed_float16"` (losses and softmax stay in
            float32; the loss is scaled) or `"mixed_bfloat16"`.
        jit_compile: compile each training step with XLA; `None` lets Keras
            decide (on for GPUs, off on CPUs, where benchmarks.distill_throughput
            measured XLA slower).
        steps_per_execution: training steps per call of the compiled
            function (Keras' `steps_per_execution`); 1 by default, as ten
            gained nothing on a CPU (docs/measurements.md). Callbacks' batch
            hooks then run once per call; epoch hooks are unchanged.
        deterministic: make TensorFlow's ops deterministic
            (`tf.config.experimental.enable_op_determinism`), so that a
            resumed run ends with the weights of an uninterrupted one, bit for
            bit.
        backup_dir: where training state is backed up at each epoch's end
            and restored from on a rerun (default `<output_dir>/backup`).
        backup_every_steps: back up after an epoch only once this many
            optimizer steps have passed since the last backup (and after the
            last epoch); 0 backs up every epoch.
    """

    strategy: str = setting(
        "default", "Distribution: default (one device), mirrored (all local GPUs, or "
        "--cpu_replicas CPU devices), multi_worker (one process per worker, the cluster "
        "from TF_CONFIG or Slurm), tpu.", choices=distribute.STRATEGIES, shapes_result=False,
    )
    cpu_replicas: int | None = setting(
        None, "With --strategy=mirrored: mirror over this many CPU devices.", lower=1,
        shapes_result=False,
    )
    precision: str = setting(
        "float32", "Keras dtype policy; losses and softmax stay float32, float16 scales "
        "the loss.", choices=PRECISIONS,
    )
    jit_compile: bool | None = setting(
        None, "Compile training steps with XLA (default: Keras decides; on for GPUs, off "
        "on CPUs).", shapes_result=False,
    )
    steps_per_execution: int = setting(
        1, "Training steps per call of the compiled step (Keras' steps_per_execution).",
        lower=1, shapes_result=False,
    )
    deterministic: bool = setting(
        False, "Deterministic TensorFlow ops, so a resumed run ends bit for bit as an "
        "uninterrupted one.",
    )
    backup_dir: str | None = setting(
        None, "Where training is backed up each epoch; rerunning the same command resumes "
        "from it (default <output_dir>/backup).", shapes_result=False,
    )
    backup_every_steps: int = setting(
        1000, "Back up after an epoch once this many steps have passed since the last "
        "backup, and after the last epoch (0: every epoch); a killed run loses at most "
        "that many steps.", lower=0, shapes_result=False,
    )

    def check(self):
        if self.cpu_replicas is not None and self.strategy != "mirrored":
            raise ValueError(
                "cpu_replicas must be a positive integer, with strategy 'mirrored'; "
                f"got cpu_replicas={self.cpu_replicas!r} with strategy {self.strategy!r}."
            )

    def start(self):
        """Applies the precision and determinism settings; returns the strategy."""
        strategy = distribute.get_strategy(self.strategy, self.cpu_replicas)
        keras.mixed_precision.set_global_policy(self.precision)
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
        return strategy

    def compile_settings(self, strategy=None):
        """Keyword arguments of `Model.compile` for these settings.

        Under a strategy with several replicas, XLA is off: Keras 3 compiles
        the whole distributed step, and XLA cannot compile a function whose
        variables live on several devices, nor its cross-replica reductions.
        """
        jit_compile = "auto" if self.jit_compile is None else self.jit_compile
        if strategy is not None and strategy.num_replicas_in_sync > 1 and jit_compile:
            if self.jit_compile:
                logging.warning(
                    "jit_compile=True is ignored under the %r strategy (%d replicas): "
                    "XLA cannot compile a step that spans devices.",
                    self.strategy, strategy.num_replicas_in_sync,
                )
            jit_compile = False
        return {"jit_compile": jit_compile, "steps_per_execution": self.steps_per_execution}

    def resolved_backup_dir(self, output_dir):
        """The backup folder of a job writing to `output_dir`."""
        return self.backup_dir or os.path.join(output_dir, "backup")
