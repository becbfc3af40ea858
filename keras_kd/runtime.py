"""`Runtime`: how a job runs — strategy, precision, XLA, determinism, backups."""

import dataclasses
import logging
import os

import keras
import tensorflow as tf

from keras_kd import distribute

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """The settings of a job that do not change what it computes, only how.

    Args:
        strategy: a name from `keras_kd.distribute.STRATEGIES`.
        cpu_replicas: logical CPU devices for `"mirrored"` without GPUs.
        precision: `"float32"`, `"mixed_float16"` (losses and softmax stay in
            float32; the loss is scaled) or `"mixed_bfloat16"`.
        jit_compile: compile each training step with XLA; `None` lets Keras
            decide (on for GPUs, off on CPUs).
        deterministic: make TensorFlow's ops deterministic
            (`tf.config.experimental.enable_op_determinism`), so that a
            resumed run ends with the weights of an uninterrupted one, bit for
            bit.
        backup_dir: where training state is backed up at each epoch's end
            and restored from on a rerun (default `<output_dir>/backup`).
    """

    strategy: str = "default"
    cpu_replicas: int | None = None
    precision: str = "float32"
    jit_compile: bool | None = None
    deterministic: bool = False
    backup_dir: str | None = None

    def validate(self):
        """Raises a ValueError naming the first bad setting."""
        if self.strategy not in distribute.STRATEGIES:
            raise ValueError(
                f"Unknown strategy {self.strategy!r}; expected one of "
                f"{distribute.STRATEGIES}."
            )
        if self.cpu_replicas is not None and (
            self.strategy != "mirrored"
            or isinstance(self.cpu_replicas, bool)
            or not isinstance(self.cpu_replicas, int)
            or self.cpu_replicas < 1
        ):
            raise ValueError(
                "cpu_replicas must be a positive integer, with strategy 'mirrored'; "
                f"got cpu_replicas={self.cpu_replicas!r} with strategy {self.strategy!r}."
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision {self.precision!r}; expected one of {PRECISIONS}."
            )

    def start(self):
        """Applies the precision and determinism settings; returns the strategy."""
        self.validate()
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
        return {"jit_compile": jit_compile}

    def resolved_backup_dir(self, output_dir):
        """The backup folder of a job writing to `output_dir`."""
        return self.backup_dir or os.path.join(output_dir, "backup")
