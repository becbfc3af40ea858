"""The distill job's report: per-epoch history and the Markdown summary."""

import csv
import os

from keras_kd import evaluation


def read_history(path, epochs):
    """The per-epoch logs a run's CSVLogger wrote, as `{name: [value per epoch]}`.

    An epoch logged twice (a run killed after logging it but before its
    backup repeats it) keeps its last row. A log appended to across a resume
    may hold a header line again, with other columns; each row is read under
    the header above it. A value missing from an epoch's row is `None`, so
    every list has one entry per epoch.
    """
    if not os.path.exists(path):
        return {}
    rows, header = {}, None
    with open(path, newline="") as f:
        for cells in csv.reader(f):
            if not cells:
                continue
            if cells[0] == "epoch":
                header = cells
                continue
            if header is None or len(cells) != len(header):
                continue  # a line cut short by a kill
            row = dict(zip(header, cells))
            rows[int(row["epoch"])] = row
    kept = sorted(rows)[:epochs]
    names = []
    for epoch in kept:
        names += [name for name in rows[epoch] if name != "epoch" and name not in names]
    history = {
        name: [
            None if rows[epoch].get(name) in (None, "", "NA", "nan") else float(rows[epoch][name])
            for epoch in kept
        ]
        for name in names
    }
    history["epoch"] = [epoch + 1 for epoch in kept]
    return history


# The columns of the table that sets the distilled student beside its references.
CONTROL_COLUMNS = ("agreement", "control_agreement", "reference_agreement", "predictive_kl",
                   "control_predictive_kl", "reference_predictive_kl", "student_accuracy",
                   "control_accuracy", "reference_accuracy", "student_nll", "control_nll",
                   "reference_nll")


def report_markdown(report):
    """The report as Markdown: the run, the fidelity table, the control, the files."""
    lines = _run_lines(report) + _control_lines(report) + [
        "",
        f"Student: `{report['artifacts']['saved_model']}` (SavedModel), "
        f"`{report['artifacts']['keras']}` (Keras).",
    ]
    return "\n".join(lines) + "\n"


def _run_lines(report):
    """The title, what was distilled from what, and the fidelity table."""
    config = report["config"]
    dataset = report.get("dataset") or {}
    generated = ""
    if dataset.get("settings"):
        generated = " Generated with " + ", ".join(
            f"{key}={value}" for key, value in dataset["settings"].items()) + "."
    return [
        f"# Distillation report: {config['dataset']}",
        "",
        f"Student `{config['student_arch']}` distilled from a "
        f"{config['members']}-member `{config['teacher_arch']}` ensemble "
        f"(alpha={config['alpha']:g}, temperature={config['temperature']:g}, "
        f"{config['epochs']} epochs, seed {config['seed']}), on the "
        f"`{config['policy']}` distillation set. The dataset has "
        f"{dataset.get('num_train', '?')} training and {dataset.get('num_test', '?')} test "
        f"examples of shape {tuple(dataset.get('input_shape', ()))}.{generated}",
        "",
        evaluation.markdown_table(report["splits"], [
            name for name in evaluation.METRIC_NAMES
            if not name.startswith(("control", "reference"))]),
        "",
        "Agreement and predictive KL (nats) compare the student with the teacher "
        f"at temperature 1; ECE is each model's calibration against labels "
        f"({config.get('ece_bins', 15)} equal-width confidence bins) and NLL its mean "
        "negative log-likelihood of the labels (nats). "
        "`train` is the training split as it is; `distill` is a sample of the "
        "distillation set the student was fit on (accuracy, ECE and NLL over its "
        "labeled examples, against mixed labels where the policy mixes). "
        "linear_cka is the linear CKA of the teacher's and the student's "
        "penultimate features; distillation_loss is the loss the student "
        "minimized (at the run's alpha and temperature).",
    ]


def _control_lines(report):
    """The table that sets the student beside its references, if there is one."""
    control, reference = report.get("control"), report.get("reference")
    if not control and not reference:
        return []
    lines = ["", "## Distilled student and its references", "",
             evaluation.markdown_table(report["splits"], CONTROL_COLUMNS), ""]
    if reference:
        lines.append(
            "The reference (the paper's, its section 3.2) is a student distilled by the "
            f"identical procedure from an independent teacher (seed {reference['seed']}, "
            f"{'reused' if reference['reused'] else 'distilled in this run'}: "
            f"`{reference['path']}`); its agreement with this run's teacher is what two "
            "students of one procedure share without sharing a teacher.")
    if control:
        lines.append(
            f"The control is a `{report['config']['student_arch']}` trained on the labels "
            f"alone ({control.get('num_train', '?')} examples, {control.get('epochs', '?')} "
            f"epochs: the student's steps), from seed {control['seed']} "
            f"({'reused' if control['reused'] else 'trained in this run'}: "
            f"`{control['path']}`). Two models of similar accuracy agree on many "
            "examples whatever they learned: the student's agreement above the "
            "references' is what distillation bought.")
    return lines
