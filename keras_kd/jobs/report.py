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
            None if rows[epoch].get(name) in (None, "", "NA") else float(rows[epoch][name])
            for epoch in kept
        ]
        for name in names
    }
    history["epoch"] = [epoch + 1 for epoch in kept]
    return history


def report_markdown(report):
    """The report as Markdown: the run, the fidelity table, the files."""
    config = report["config"]
    lines = [
        f"# Distillation report: {config['dataset']}",
        "",
        f"Student `{config['student_arch']}` distilled from a "
        f"{config['members']}-member `{config['teacher_arch']}` ensemble "
        f"(alpha={config['alpha']:g}, temperature={config['temperature']:g}, "
        f"{config['epochs']} epochs, seed {config['seed']}), on the "
        f"`{config['policy']}` distillation set.",
        "",
        evaluation.markdown_table(report["splits"]),
        "",
        "Agreement and predictive KL (nats) compare the student with the teacher "
        "at temperature 1; ECE is each model's calibration against labels. "
        "`train` is the training split as it is; `distill` is a sample of the "
        "distillation set the student was fit on (accuracy and ECE over its "
        "labeled examples, against mixed labels where the policy mixes). "
        "linear_cka is the linear CKA of the teacher's and the student's "
        "penultimate features; distillation_loss is the loss the student "
        "minimized (at the run's alpha and temperature).",
        "",
        f"Student: `{report['artifacts']['saved_model']}` (SavedModel), "
        f"`{report['artifacts']['keras']}` (Keras).",
    ]
    return "\n".join(lines) + "\n"
