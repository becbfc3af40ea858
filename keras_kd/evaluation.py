"""Fidelity reports: how closely a student matches its teacher, split by split."""

import dataclasses

import keras

from keras_kd import batch as batch_lib
from keras_kd import fidelity as fidelity_lib
from keras_kd import losses
from keras_kd import models
from keras_kd import trace_cache

METRIC_NAMES = fidelity_lib.METRIC_NAMES


def fidelity_metrics(teacher, student, dataset, num_bins=15, distillation=None,
                     representation=False, control=None, reference=None):
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
        distillation: a `keras_kd.losses.DistillationLoss`, a `Distiller`
            or a `keras_kd.jobs.Distillation` (see
            `keras_kd.losses.as_distillation_loss`) to also report
            `distillation_loss`, the mean per-example loss a `Distiller` with
            that loss minimizes; `None` to skip it.
        representation: also report `linear_cka`, the linear CKA of the
            models' penultimate features (`keras_kd.models.penultimate`);
            needs functional models.
        control: a model returning logits, trained independently of the
            teacher (same architecture and budget as the student, labels
            only), to report `control_agreement`, `control_predictive_kl`
            and its accuracy, ECE and NLL: what the student's fidelity is
            read against.
        reference: the paper's reference (section 3.2), a student distilled
            by the identical procedure from an independent teacher, to
            report `reference_agreement`, `reference_predictive_kl` and its
            accuracy, ECE and NLL.

    Returns:
        A dict of floats keyed by `METRIC_NAMES`. Accuracy, calibration and
        NLL cover labeled examples; they are absent for a split without labels.
    """
    measure = _SplitMeasure(teacher, student, num_bins, distillation, representation, control,
                            reference)
    return measure(dataset)


class _SplitMeasure:
    """`fidelity_metrics` for one set of models, over any number of splits.

    Each model's forward pass is traced once, for every split and batch
    size; the metrics' update once per batch structure (a split with cached
    teacher logits has another), so a report of several splits traces the
    models once, not once per split.
    """

    def __init__(self, teacher, student, num_bins, distillation, representation, control,
                 reference=None):
        self.representation = representation
        self.fidelity = fidelity_lib.Fidelity(
            teacher_metrics=True, num_bins=num_bins, representation=representation,
            distillation=distillation, nll=True, control=control is not None,
            reference=reference is not None,
        )
        self._forwards, features = {}, {}
        models_of = {"teacher": teacher, "student": student, "control": control,
                     "reference": reference}
        for role, model in models_of.items():
            if model is not None:
                wanted = representation and role in ("teacher", "student")
                # In a sweep, a kept model's forward is traced once, for every report.
                self._forwards[role], features[role] = trace_cache.kept(
                    ("forward", model, wanted), lambda: _traced_features(model, wanted))
        if representation:
            self.fidelity.build_representation(features["teacher"], features["student"])
        self._update = trace_cache.any_batch_size(self._update_state, autograph=False)

    def _outputs(self, batch):
        """Each model's outputs on `batch.x` (the teacher's only where needed)."""
        roles = [role for role in self._forwards if role != "teacher"
                 or self.representation or batch.teacher_logits is None]
        return {role: self._forwards[role](batch.x) for role in roles}

    def _update_state(self, parts):
        batch = batch_lib.DistillationBatch(**parts["batch"])
        outputs = parts["outputs"]
        teacher, student = outputs.get("teacher"), outputs["student"]
        features = None
        if self.representation:
            (teacher_features, teacher), (student_features, student) = teacher, student
            features = (teacher_features, student_features)
        self.fidelity.update_state(
            batch, fidelity_lib.teacher_logits(batch, None, computed=teacher), student,
            features=features, control_logits=outputs.get("control"),
            reference_logits=outputs.get("reference"),
        )

    def __call__(self, dataset):
        self.fidelity.reset_state()
        for data in dataset:
            batch = batch_lib.unpack(data)
            present = {field.name: getattr(batch, field.name)
                       for field in dataclasses.fields(batch)
                       if getattr(batch, field.name) is not None}
            self._update({"batch": present, "outputs": self._outputs(batch)})
        return self.fidelity.result()


def accuracy(model, batches):
    """The top-1 accuracy of a model returning logits over `(x, y)` batches.

    >>> import numpy as np
    >>> model = keras_kd.models.get("mlp", (4,), 3, hidden_units=(8,))
    >>> 0.0 <= accuracy(model, [(np.zeros((2, 4), "float32"), np.array([0, 1]))]) <= 1.0
    True
    """
    metric = keras.metrics.SparseCategoricalAccuracy()
    with trace_cache.stand_ins(model) as (model,):
        # Traced (a sweep's later models of this structure reuse the trace).
        forward = trace_cache.kept(("accuracy", model), lambda: _traced_forward(model))
        for x, y in batches:
            metric.update_state(y, forward(x))
    return float(metric.result())


def _traced_forward(model):
    return trace_cache.any_batch_size(lambda x: model(x, training=False))


def _traced_features(model, features):
    """`(forward, feature_count)`: `model`'s traced forward pass, returning
    `(penultimate features, logits)` with `features`, else logits (and
    `None` for the count)."""
    if not features:
        return _traced_forward(model), None
    model = models.features_and_logits(model)
    return _traced_forward(model), model.outputs[0].shape[-1]


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
                    representation=False, control=None, reference=None):
    """`fidelity_metrics` for each named split.

    Args:
        teacher: the teacher model (or `keras_kd.Ensemble`).
        student: the student model.
        splits: a mapping from split name (`"train"`, `"test"`, ...) to batches.
        num_bins: confidence bins of the calibration error.
        distillation: a `keras_kd.losses.DistillationLoss` (see
            `fidelity_metrics`) to report `distillation_loss`.
        representation: also report `linear_cka`, the linear CKA of the
            models' penultimate features; needs functional models.
        control: an independently trained student, to report its fidelity
            to the teacher beside the student's (see `fidelity_metrics`).
        reference: the paper's reference student (see `fidelity_metrics`).

    Returns:
        `{split_name: {metric_name: value}}`.
    """
    # In a sweep, the report of a run of kept models reuses the last run's traces.
    distillation = losses.as_distillation_loss(distillation)
    measure = trace_cache.kept(
        ("fidelity_report", teacher, student, control, reference, num_bins, representation,
         None if distillation is None else repr(distillation)),
        lambda: _SplitMeasure(teacher, student, num_bins, distillation, representation, control,
                              reference))
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
