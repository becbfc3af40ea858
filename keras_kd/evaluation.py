"""Fidelity reports: how closely a student matches its teacher, split by split."""

import keras
import tensorflow as tf

from keras_kd import batch as batch_lib
from keras_kd import metrics as metrics_lib

METRIC_NAMES = (
    "teacher_accuracy",
    "student_accuracy",
    "agreement",
    "predictive_kl",
    "student_ece",
    "teacher_ece",
)


def fidelity_metrics(teacher, student, dataset, num_bins=15):
    """Accuracy, calibration and teacher-student fidelity over one split.

    Args:
        teacher: a model returning logits; not called for batches that carry
            `teacher_logits` (it may then be `None`).
        student: a model returning logits.
        dataset: batches in any `keras_kd.batch` format.
        num_bins: confidence bins of the calibration error.

    Returns:
        A dict of floats keyed by `METRIC_NAMES`. Accuracy and calibration
        cover labeled examples; they are absent for a split without labels.
    """
    trackers = {
        "teacher_accuracy": keras.metrics.MeanMetricWrapper(metrics_lib.accuracy),
        "student_accuracy": keras.metrics.MeanMetricWrapper(metrics_lib.accuracy),
        "agreement": metrics_lib.Agreement(),
        "predictive_kl": metrics_lib.PredictiveKL(),
        "student_ece": metrics_lib.ExpectedCalibrationError(num_bins),
        "teacher_ece": metrics_lib.ExpectedCalibrationError(num_bins),
    }
    labeled = tf.Variable(0.0, trainable=False)

    def update(data):
        batch = batch_lib.unpack(data)
        teacher_logits = batch.teacher_logits
        if teacher_logits is None:
            teacher_logits = teacher(batch.x, training=False)
        student_logits = student(batch.x, training=False)
        trackers["agreement"].update_state(
            teacher_logits, student_logits, batch.sample_weight
        )
        trackers["predictive_kl"].update_state(
            teacher_logits, student_logits, batch.sample_weight
        )
        if batch.y is not None:
            weight = batch_lib.labeled_weight(batch)
            for role, logits in (("teacher", teacher_logits), ("student", student_logits)):
                trackers[f"{role}_accuracy"].update_state(batch.y, logits, weight)
                trackers[f"{role}_ece"].update_state(batch.y, logits, weight)
            labeled.assign_add(1.0)

    # One trace per split: the spec leaves the batch size free, so the last,
    # smaller batch does not retrace.
    spec = getattr(dataset, "element_spec", None)
    if spec is None:
        update = tf.function(update, reduce_retracing=True)
    else:
        update = tf.function(update, input_signature=(spec,))
    for data in dataset:
        update(data)
    has_labels = float(labeled.numpy()) > 0
    return {
        name: float(tracker.result())
        for name, tracker in trackers.items()
        if has_labels or name in ("agreement", "predictive_kl")
    }


def fidelity_report(teacher, student, splits, num_bins=15):
    """`fidelity_metrics` for each named split.

    Args:
        teacher: the teacher model (or `keras_kd.Ensemble`).
        student: the student model.
        splits: a mapping from split name (`"train"`, `"test"`, ...) to batches.
        num_bins: confidence bins of the calibration error.

    Returns:
        `{split_name: {metric_name: value}}`.
    """
    return {
        name: fidelity_metrics(teacher, student, dataset, num_bins)
        for name, dataset in splits.items()
    }


def markdown_table(report):
    """A Markdown table with a row per split and a column per metric.

    Example:

    >>> print(markdown_table({"test": {"agreement": 0.9}}))
    | split | agreement |
    |---|---|
    | test | 0.9000 |
    """
    columns = [
        name for name in METRIC_NAMES if any(name in row for row in report.values())
    ]
    lines = [
        "| split | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for split, row in report.items():
        cells = [f"{row[name]:.4f}" if name in row else "" for name in columns]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
