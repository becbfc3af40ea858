"""Fidelity reports: how closely a student matches its teacher, split by split."""

import keras
import tensorflow as tf

from keras_kd import batch as batch_lib
from keras_kd import losses
from keras_kd import metrics as metrics_lib
from keras_kd import models

METRIC_NAMES = (
    "teacher_accuracy",
    "student_accuracy",
    "agreement",
    "predictive_kl",
    "student_ece",
    "teacher_ece",
    "linear_cka",
    "distillation_loss",
)


def fidelity_metrics(teacher, student, dataset, num_bins=15, distillation=None):
    """Accuracy, calibration and teacher-student fidelity over one split.

    Args:
        teacher: a model returning logits; not called for batches that carry
            `teacher_logits` (it may then be `None`).
        student: a model returning logits.
        dataset: batches in any `keras_kd.batch` format.
        num_bins: confidence bins of the calibration error.
        distillation: `(alpha, temperature)` to also report
            `distillation_loss`, the mean per-example loss a `Distiller` with
            those settings minimizes (a batch's own temperatures win, as in
            training); `None` to skip it.

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
    if distillation is not None:
        trackers["distillation_loss"] = keras.metrics.Mean()
    labeled = tf.Variable(0.0, trainable=False)

    def update(data):
        batch = batch_lib.unpack(data)
        teacher_logits = batch.teacher_logits
        if teacher_logits is None:
            teacher_logits = teacher(batch.x, training=False)
        student_logits = student(batch.x, training=False)
        if distillation is not None:
            _update_distillation_loss(
                trackers["distillation_loss"], batch, teacher_logits, student_logits,
                *distillation,
            )
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
        if has_labels or name in ("agreement", "predictive_kl", "distillation_loss")
    }


def _update_distillation_loss(tracker, batch, teacher_logits, student_logits, alpha,
                              temperature):
    if batch.temperature is not None:
        temperature = batch.temperature
    if batch.y is None:
        # Without labels only the soft term is defined; it keeps its weight.
        _, soft = losses.distillation_loss_terms(None, teacher_logits, student_logits, 0.0,
                                                 temperature)
        tracker.update_state((1.0 - alpha) * soft, batch.sample_weight)
        return
    hard, soft = losses.distillation_loss_terms(
        batch.y, teacher_logits, student_logits, alpha, temperature, batch.hard_label_mask
    )
    tracker.update_state(hard + soft, batch.sample_weight)


def representation_similarity(teacher, student, dataset):
    """Linear CKA of the teacher's and the student's penultimate features.

    Args:
        teacher: a functional model or `keras_kd.Ensemble` (whose members'
            features are taken side by side); see `keras_kd.models.penultimate`.
        student: a functional model.
        dataset: batches in any `keras_kd.batch` format; sample weights count.

    Returns:
        The linear CKA over the whole split, a float in [0, 1].
    """
    teacher_features = models.penultimate(teacher)
    student_features = models.penultimate(student)
    cka = metrics_lib.LinearCKA()

    def update(data):
        batch = batch_lib.unpack(data)
        cka.update_state(
            teacher_features(batch.x, training=False),
            student_features(batch.x, training=False),
            batch.sample_weight,
        )

    spec = getattr(dataset, "element_spec", None)
    traced = None
    for data in dataset:
        if traced is None:
            update(data)  # eagerly, so the metric makes its variables here
            traced = (
                tf.function(update, reduce_retracing=True) if spec is None
                else tf.function(update, input_signature=(spec,))
            )
        else:
            traced(data)
    return float(cka.result())


def fidelity_report(teacher, student, splits, num_bins=15, distillation=None,
                    representation=False):
    """`fidelity_metrics` for each named split.

    Args:
        teacher: the teacher model (or `keras_kd.Ensemble`).
        student: the student model.
        splits: a mapping from split name (`"train"`, `"test"`, ...) to batches.
        num_bins: confidence bins of the calibration error.
        distillation: `(alpha, temperature)` to report `distillation_loss`.
        representation: also report `linear_cka`, the linear CKA of the
            models' penultimate features (`representation_similarity`);
            needs functional models.

    Returns:
        `{split_name: {metric_name: value}}`.
    """
    report = {}
    for name, dataset in splits.items():
        report[name] = fidelity_metrics(teacher, student, dataset, num_bins, distillation)
        if representation:
            report[name]["linear_cka"] = representation_similarity(teacher, student, dataset)
    return report


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
