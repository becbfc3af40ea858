"""Fidelity reports: how closely a student matches its teacher, split by split."""

import keras
import tensorflow as tf

from keras_kd import batch as batch_lib
from keras_kd import fidelity as fidelity_lib
from keras_kd import models

METRIC_NAMES = fidelity_lib.METRIC_NAMES


def fidelity_metrics(teacher, student, dataset, num_bins=15, distillation=None,
                     representation=False, control=None):
    """Accuracy, calibration, NLL and teacher-student fidelity over one split.

    Each batch runs the teacher once (not at all when it carries
    `teacher_logits`), the student once, features included when
    `representation` asks for them, and the control once if there is one.

    Args:
        teacher: a model returning logits; not called for batches that carry
            `teacher_logits` (it may then be `None`, without `representation`).
        student: a model returning logits.
        dataset: batches in any `keras_kd.batch` format.
        num_bins: confidence bins of the calibration error.
        distillation: an object with `alpha` and `temperature` (a
            `keras_kd.jobs.Distillation`, or the `Distiller`) to also report
            `distillation_loss`, the mean per-example loss a `Distiller` with
            those settings minimizes; `None` to skip it.
        representation: also report `linear_cka`, the linear CKA of the
            models' penultimate features (`keras_kd.models.penultimate`);
            needs functional models.
        control: a model returning logits, trained independently of the
            teacher (same architecture and budget as the student, labels
            only), to report `control_agreement`, `control_predictive_kl`
            and its accuracy, ECE and NLL: what the student's fidelity is
            read against.

    Returns:
        A dict of floats keyed by `METRIC_NAMES`. Accuracy, calibration and
        NLL cover labeled examples; they are absent for a split without labels.
    """
    measure = _SplitMeasure(teacher, student, num_bins, distillation, representation, control)
    return measure(dataset)


class _SplitMeasure:
    """`fidelity_metrics` for one set of models, over any number of splits.

    The models' features and the traced update are made once and shared by
    every split whose batches have the same structure, so a report of
    several splits traces the models once, not once per split.
    """

    def __init__(self, teacher, student, num_bins, distillation, representation, control):
        self.teacher, self.student, self.control = teacher, student, control
        self.representation = representation
        self.fidelity = fidelity_lib.Fidelity(
            teacher_metrics=True, num_bins=num_bins, representation=representation,
            distillation=distillation, nll=True, control=control is not None,
        )
        if representation:
            self.teacher_model = models.features_and_logits(teacher)
            self.student_model = models.features_and_logits(student)
        self._traced = {}  # one traced update per batch structure

    def update(self, data):
        batch = batch_lib.unpack(data)
        control = self.control
        control_logits = None if control is None else control(batch.x, training=False)
        if not self.representation:
            self.fidelity.update_state(
                batch, fidelity_lib.teacher_logits(batch, self.teacher),
                self.student(batch.x, training=False), control_logits=control_logits,
            )
            return
        teacher_features, logits = self.teacher_model(batch.x, training=False)
        student_features, student_logits = self.student_model(batch.x, training=False)
        self.fidelity.update_state(
            batch, fidelity_lib.teacher_logits(batch, self.teacher, computed=logits),
            student_logits, features=(teacher_features, student_features),
            control_logits=control_logits,
        )

    def __call__(self, dataset):
        self.fidelity.reset_state()
        # The spec leaves the batch size free, so the last, smaller batch does
        # not retrace; a spec seen before (another split's) reuses its trace.
        spec = getattr(dataset, "element_spec", None)
        key = None if spec is None else repr(spec)
        for index, data in enumerate(dataset):
            if self.representation and index == 0:
                # Eagerly: the CKA metric makes its variables here (and each
                # split's first batch is measured as it always was).
                self.update(data)
                continue
            if key not in self._traced:
                self._traced[key] = _trace(self.update, spec)
            self._traced[key](data)
        return self.fidelity.result()


def accuracy(model, batches):
    """The top-1 accuracy of a model returning logits over `(x, y)` batches.

    >>> import numpy as np
    >>> model = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> 0.0 <= accuracy(model, [(np.zeros((2, 4), "float32"), np.array([0, 1]))]) <= 1.0
    True
    """
    metric = keras.metrics.SparseCategoricalAccuracy()
    for x, y in batches:
        metric.update_state(y, model(x, training=False))
    return float(metric.result())


def _trace(function, spec):
    if spec is None:
        return tf.function(function, reduce_retracing=True)
    return tf.function(function, input_signature=(spec,))


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
    return fidelity_metrics(teacher, student, dataset, representation=True)["linear_cka"]


def fidelity_report(teacher, student, splits, num_bins=15, distillation=None,
                    representation=False, control=None):
    """`fidelity_metrics` for each named split.

    Args:
        teacher: the teacher model (or `keras_kd.Ensemble`).
        student: the student model.
        splits: a mapping from split name (`"train"`, `"test"`, ...) to batches.
        num_bins: confidence bins of the calibration error.
        distillation: an object with `alpha` and `temperature` to report
            `distillation_loss`.
        representation: also report `linear_cka`, the linear CKA of the
            models' penultimate features; needs functional models.
        control: an independently trained student, to report its fidelity
            to the teacher beside the student's (see `fidelity_metrics`).

    Returns:
        `{split_name: {metric_name: value}}`.
    """
    measure = _SplitMeasure(teacher, student, num_bins, distillation, representation, control)
    return {name: measure(dataset) for name, dataset in splits.items()}


def markdown_table(report, columns=None):
    """A Markdown table with a row per split and a column per metric.

    Args:
        report: `{split: {metric: value}}`, as `fidelity_report` returns.
        columns: the metrics to show, in order (default: every metric
            present, in `METRIC_NAMES` order).

    Example:

    >>> print(markdown_table({"test": {"agreement": 0.9}}))
    | split | agreement |
    |---|---|
    | test | 0.9000 |
    """
    columns = [
        name for name in (columns or METRIC_NAMES)
        if any(name in row for row in report.values())
    ]
    lines = [
        "| split | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for split, row in report.items():
        cells = [f"{row[name]:.4f}" if row.get(name) is not None else "" for name in columns]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
