"""The fidelity of a student to its teacher: one set of metrics, one naming.

`Fidelity` holds the metrics that compare a student with its teacher (top-1
agreement, predictive KL) and with the labels (accuracy, calibration), and
`teacher_logits` is the one way to get a batch's teacher logits (carried by
the batch, from a cache, or computed by the teacher). The `Distiller`'s
training metrics, `keras_kd.evaluation`'s reports and
`keras_kd.callbacks.FidelityCallback` all use them, so a metric added here
shows up in all three, under the same name.
"""

import keras
import tensorflow as tf

from keras_kd import batch as batch_lib
from keras_kd import losses
from keras_kd import metrics as metrics_lib

# Every result key, in report order.
METRIC_NAMES = (
    "teacher_accuracy",
    "student_accuracy",
    "agreement",
    "predictive_kl",
    "student_ece",
    "teacher_ece",
    "student_nll",
    "teacher_nll",
    "linear_cka",
    "distillation_loss",
    "control_accuracy",
    "control_agreement",
    "control_predictive_kl",
    "control_ece",
    "control_nll",
    "reference_accuracy",
    "reference_agreement",
    "reference_predictive_kl",
    "reference_ece",
    "reference_nll",
)
# Results that need labels; a split without any reports none of them.
LABEL_METRICS = ("teacher_accuracy", "student_accuracy", "student_ece", "teacher_ece",
                 "student_nll", "teacher_nll", "control_accuracy", "control_ece",
                 "control_nll", "reference_accuracy", "reference_ece", "reference_nll")
# The models measured against labels, and their logits' keyword in `update_state`.
_ROLES = ("teacher", "student", "control", "reference")
# The models the student's fidelity is read against, each compared with the teacher.
REFERENCE_ROLES = ("control", "reference")


def teacher_logits(batch, teacher, computed=None):
    """The teacher's float32 logits for a `keras_kd.batch.DistillationBatch`.

    The batch's own `teacher_logits` (precomputed, or from a cache) win; else
    `computed`, logits the caller already has for `batch.x` (with the
    teacher's features, say); the teacher is called (in inference mode) only
    for batches with neither.
    """
    logits = batch.teacher_logits
    if logits is None and computed is not None:
        logits = computed
    if logits is None:
        if teacher is None:
            raise ValueError(
                "The batch carries no teacher_logits and no teacher was given to compute them."
            )
        logits = teacher(batch.x, training=False)
    return tf.cast(logits, "float32")


class Fidelity:
    """The metrics of a student against its teacher and the labels.

    Results are keyed by `METRIC_NAMES`: `agreement` and `predictive_kl`
    (student against teacher, at temperature 1), `student_accuracy` and
    `student_ece` (against labels, over labeled examples), and, as asked,
    `teacher_accuracy` and `teacher_ece`, each model's `*_nll`, `linear_cka`
    of penultimate features, `distillation_loss`, and the same for each
    model the student is read against: `control_agreement` and
    `control_predictive_kl` (a model of the student's architecture trained
    on the labels alone, against the same teacher), its `control_accuracy`,
    `control_ece` and `control_nll`; and `reference_*`, the paper's
    reference (section 3.2: a student distilled by the identical procedure
    from an independent teacher), against this teacher.

    Args:
        teacher_metrics: also measure the teacher against the labels.
        calibration: measure the expected calibration error.
        num_bins: confidence bins of the calibration error.
        representation: measure the linear CKA of the teacher's and the
            student's features (`update_state(..., features=(t, s))`).
        distillation: a `keras_kd.losses.DistillationLoss` (or what
            `keras_kd.losses.as_distillation_loss` reads as one) to
            report `distillation_loss`, the mean per-example loss a
            `Distiller` with that loss minimizes (a batch's own
            temperatures win).
        nll: measure each model's negative log-likelihood of the labels.
        control: measure a control model too (`update_state(...,
            control_logits=...)`): an independently trained student, whose
            agreement with the teacher is what the student's is read against.
        reference: measure the paper's reference model too
            (`update_state(..., reference_logits=...)`).

    Example:

    >>> fidelity = keras_kd.fidelity.Fidelity()
    >>> batch = keras_kd.batch.unpack((np.zeros((2, 4)), np.array([0, 1])))
    >>> fidelity.update_state(batch, np.array([[2.0, 0.0], [0.0, 2.0]]),
    ...                       np.array([[1.0, 0.0], [1.0, 0.0]]))
    >>> {name: round(value, 2) for name, value in fidelity.result().items()}
    {'student_accuracy': 0.5, 'agreement': 0.5, 'predictive_kl': 0.45, 'student_ece': 0.23}
    """

    def __init__(self, teacher_metrics=False, calibration=True, num_bins=15,
                 representation=False, distillation=None, nll=False, control=False,
                 reference=False):
        self.distillation = losses.as_distillation_loss(distillation)
        others = [role for role, wanted in zip(REFERENCE_ROLES, (control, reference)) if wanted]
        roles = ["student"] + ["teacher"] * teacher_metrics + others
        made = {
            "accuracy": _accuracy,
            "ece": (lambda name: metrics_lib.ExpectedCalibrationError(num_bins, name=name))
            if calibration else None,
            "nll": (lambda name: metrics_lib.NegativeLogLikelihood(name=name)) if nll else None,
        }
        metrics = {}
        for role in roles:
            for kind, make in made.items():
                if make is not None:
                    metrics[f"{role}_{kind}"] = make(f"{role}_{kind}")
        metrics["agreement"] = metrics_lib.Agreement(name="agreement")
        metrics["predictive_kl"] = metrics_lib.PredictiveKL(name="predictive_kl")
        for role in others:
            metrics[f"{role}_agreement"] = metrics_lib.Agreement(name=f"{role}_agreement")
            metrics[f"{role}_predictive_kl"] = metrics_lib.PredictiveKL(
                name=f"{role}_predictive_kl")
        if representation:
            metrics["linear_cka"] = metrics_lib.LinearCKA(name="linear_cka")
        if distillation is not None:
            metrics["distillation_loss"] = keras.metrics.Mean(name="distillation_loss")
        self._metrics = {name: metrics[name] for name in METRIC_NAMES if name in metrics}
        self._labeled = keras.metrics.Sum(name="labeled_examples")

    @property
    def metrics(self):
        """The Keras metric objects, named by their result keys."""
        return list(self._metrics.values())

    def build_representation(self, teacher_features, student_features):
        """Makes `linear_cka`'s variables for the models' feature counts, so
        that every update can run traced (`metrics.LinearCKA.build_state`)."""
        if "linear_cka" in self._metrics:
            self._metrics["linear_cka"].build_state(teacher_features, student_features)

    def update_state(self, batch, teacher_logits, student_logits, features=None,
                     control_logits=None, reference_logits=None):
        """Adds one batch.

        Args:
            batch: a `keras_kd.batch.DistillationBatch`.
            teacher_logits: `[batch, classes]`, e.g. from `teacher_logits`.
            student_logits: `[batch, classes]`.
            features: `(teacher_features, student_features)`, with
                `representation=True`.
            control_logits: `[batch, classes]` of the control, with `control=True`.
            reference_logits: `[batch, classes]` of the reference, with `reference=True`.
        """
        student_logits = tf.cast(student_logits, "float32")
        weight = batch.sample_weight
        self._metrics["agreement"].update_state(teacher_logits, student_logits, weight)
        self._metrics["predictive_kl"].update_state(teacher_logits, student_logits, weight)
        others = {"control": control_logits, "reference": reference_logits}
        for role, logits in others.items():
            if f"{role}_agreement" in self._metrics:
                others[role] = logits = tf.cast(logits, "float32")
                self._metrics[f"{role}_agreement"].update_state(teacher_logits, logits, weight)
                self._metrics[f"{role}_predictive_kl"].update_state(
                    teacher_logits, logits, weight)
        if "linear_cka" in self._metrics:
            self._metrics["linear_cka"].update_state(*features, weight)
        if self.distillation is not None:
            self._update_distillation_loss(batch, teacher_logits, student_logits)
        if batch.y is None:
            return
        labeled = batch_lib.labeled_weight(batch)
        logits_of = {"teacher": teacher_logits, "student": student_logits, **others}
        for role, logits in logits_of.items():
            for metric in (f"{role}_accuracy", f"{role}_ece", f"{role}_nll"):
                if metric in self._metrics:
                    self._metrics[metric].update_state(batch.y, logits, labeled)
        self._labeled.update_state(
            tf.ones_like(student_logits[:, 0]) if labeled is None else labeled
        )

    def _update_distillation_loss(self, batch, teacher_logits, student_logits):
        # Without labels only the soft term is defined; it keeps its weight.
        hard, soft = self.distillation.compute_terms(
            teacher_logits, student_logits, batch.y, **batch_lib.loss_extras(batch))
        self._metrics["distillation_loss"].update_state(hard + soft, batch.sample_weight)

    def result(self, labeled_only=True):
        """`{name: float}`; label metrics are left out when no example had a label."""
        has_labels = float(self._labeled.result()) > 0
        return {
            name: float(metric.result())
            for name, metric in self._metrics.items()
            if has_labels or not labeled_only or name not in LABEL_METRICS
        }

    def reset_state(self):
        for metric in (*self._metrics.values(), self._labeled):
            metric.reset_state()


def _accuracy(name):
    return keras.metrics.MeanMetricWrapper(metrics_lib.accuracy, name=name)
