"""Result rows of a sweep, their summary over seeds (against plain distillation for
recipes, beside a paper's stated numbers where given), and the files they go to."""

import csv
import io
import json
import os

import numpy as np

from keras_kd import digests
from keras_kd import export
from keras_kd.experiments import paper as paper_lib

# (metric, column title) of the summary table, in order.
SUMMARY_COLUMNS = (
    ("test_teacher_accuracy", "teacher test acc"),
    ("test_student_accuracy", "student test acc"),
    ("test_control_accuracy", "control test acc"),
    ("test_reference_accuracy", "reference test acc"),
    ("test_agreement", "test agreement"),
    ("test_control_agreement", "control test agreement"),
    ("test_reference_agreement", "reference test agreement"),
    ("test_predictive_kl", "test KL"),
    ("test_control_predictive_kl", "control test KL"),
    ("test_reference_predictive_kl", "reference test KL"),
    ("test_student_ece", "student test ECE"),
    ("test_control_ece", "control test ECE"),
    ("test_teacher_nll", "teacher test NLL"),
    ("test_student_nll", "student test NLL"),
    ("test_control_nll", "control test NLL"),
    ("train_agreement", "train agreement"),
    ("train_control_agreement", "control train agreement"),
    ("train_reference_agreement", "reference train agreement"),
    ("train_predictive_kl", "train KL"),
    ("start_train_agreement", "train agreement at start"),
    ("distill_agreement", "distill agreement"),
    ("distill_predictive_kl", "distill KL"),
    ("test_linear_cka", "test CKA"),
    ("distill_distillation_loss", "distill loss"),
)


# What every row of a finished distill run holds, and its tables and plots read.
ROW_FIELDS = ("experiment", "run_id", "settings", "metrics", "config", "wall_s")
REQUIRED_METRICS = ("test_agreement", "test_predictive_kl", "test_student_accuracy",
                    "train_agreement")


def sealed(row):
    """`row` with `digest`, a digest of the rest of its content, so an edited
    or damaged copy of it is found (`row_problem`)."""
    content = {name: value for name, value in row.items() if name != "digest"}
    return {**content, "digest": digests.json_digest(content, length=16)}


def row_problem(row):
    """Why a stored result row cannot be trusted (a sentence), or `None`.

    A row is trusted when it has every field and metric a finished run's row
    has, and its `digest` still matches its content (see `sealed`).

    >>> row_problem(sealed({"experiment": "e", "run_id": "r", "settings": {}, "config": {},
    ...                     "wall_s": 1.0, "metrics": dict.fromkeys(REQUIRED_METRICS, 0.5)}))
    >>> row_problem({"metrics": {}})
    "it lacks ['config', 'experiment', 'run_id', 'settings', 'wall_s']"
    """
    if not isinstance(row, dict):
        return f"it is a {type(row).__name__}, not a result row"
    missing = sorted(set(ROW_FIELDS) - set(row))
    if missing:
        return f"it lacks {missing}"
    if not isinstance(row["metrics"], dict) or not isinstance(row["config"], dict):
        return "its metrics or config are not mappings"
    missing = [name for name in REQUIRED_METRICS if name not in row["metrics"]]
    if missing:
        return f"its metrics lack {missing}"
    if "digest" not in row:
        return "it has no digest (written before results were sealed)"
    if sealed(row)["digest"] != row["digest"]:
        return "its content does not match its digest: it was edited or damaged"
    return None


def result_row(experiment, run_id, settings, report, wall_s):
    """One run's row: its settings, every config field, every metric, its history.

    Args:
        experiment: the sweep's name.
        run_id: the run's name in the sweep.
        settings: the run's swept settings (the seed included).
        report: the report `keras_kd.jobs.distill.run` returned.
        wall_s: the run's wall time in seconds.

    Returns:
        A JSON-ready dict: `experiment`, `run_id`, `settings`, `metrics`
        (`<split>_<metric>`, e.g. `test_agreement`), `wall_s`, `config`,
        `timing`, `history` (per-epoch logs) and `loss_plane` (or `None`).
        An interpolated student's fidelity before training is in `metrics`
        as `start_<split>_agreement` and `start_<split>_predictive_kl`.
    """
    metrics = {
        f"{split}_{name}": value
        for split, values in report["splits"].items()
        for name, value in values.items()
    }
    for split, values in (report.get("student_start") or {}).items():
        for name in ("agreement", "predictive_kl"):
            metrics[f"start_{split}_{name}"] = values[name]
    members = report.get("teacher_members") or []
    if members:
        accuracies = [member["test_accuracy"] for member in members]
        metrics["teacher_members_test_accuracy"] = float(np.mean(accuracies))
    return {
        "experiment": experiment,
        "run_id": run_id,
        "settings": dict(settings),
        "metrics": metrics,
        "wall_s": float(wall_s),
        "config": report["config"],
        "timing": report.get("timing", {}),
        "history": report.get("history", {}),
        "loss_plane": report.get("loss_plane"),
    }


def headline(row):
    """A one-line digest of a row: test accuracy, agreement and KL."""
    metrics = row["metrics"]
    parts = [
        f"{title} {metrics[name]:.4f}"
        for name, title in (
            ("test_student_accuracy", "student test acc"),
            ("test_agreement", "test agreement"),
            ("test_control_agreement", "control"),
            ("test_reference_agreement", "reference"),
            ("test_predictive_kl", "test KL"),
            ("test_control_predictive_kl", "control"),
            ("test_reference_predictive_kl", "reference"),
        )
        if name in metrics
    ]
    return ", ".join(parts)


def configuration(settings):
    """The settings that define a configuration: all but the seed."""
    return {name: value for name, value in settings.items() if name != "seed"}


def label(settings):
    """A short label of a configuration, e.g. `'members=3'`.

    Example:

    >>> label({"temperature": 4.0, "alpha": 0.5, "seed": 1})
    'temperature=4, alpha=0.5'
    """
    parts = [
        f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in configuration(settings).items()
    ]
    return ", ".join(parts) or "base"


def summarize(rows):
    """Mean and standard deviation over seeds of each configuration's metrics.

    Rows whose settings differ only in `seed` form one configuration. The
    standard deviation is the sample one (`ddof=1`); 0 for a single run.

    Returns:
        A list, in first-appearance order, of dicts with `settings` (the
        configuration), `label`, `runs`, `seeds`, `wall_s` (mean) and
        `metrics`: `{name: (mean, std)}`.
    """
    groups = {}
    for row in rows:
        key = json.dumps(configuration(row["settings"]), sort_keys=True, default=str)
        groups.setdefault(key, []).append(row)
    summary = []
    for members in groups.values():
        names = sorted(set().union(*(row["metrics"] for row in members)))
        metrics = {}
        for name in names:
            values = np.array([row["metrics"][name] for row in members if name in row["metrics"]])
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            metrics[name] = (float(values.mean()), std)
        settings = configuration(members[0]["settings"])
        summary.append({
            "settings": settings,
            "label": label(settings),
            "runs": len(members),
            "seeds": [row["settings"].get("seed") for row in members],
            "wall_s": float(np.mean([row["wall_s"] for row in members])),
            "metrics": metrics,
        })
    return summary


def summary_markdown(rows, description=""):
    """`summary.md`: a table of means ± std over seeds, one line per configuration."""
    summary = summarize(rows)
    columns = [
        (name, title) for name, title in SUMMARY_COLUMNS
        if any(name in group["metrics"] for group in summary)
    ]
    table = [
        [group["label"], str(group["runs"]),
         *(_mean_std(group["metrics"].get(name)) for name, _ in columns),
         f"{group['wall_s']:.0f}"]
        for group in summary
    ]
    head = description.strip() + "\n\n" if description.strip() else ""
    return head + _markdown_table(
        ["configuration", "runs", *(title for _, title in columns), "wall s/run"],
        table,
        "Means ± sample standard deviations over the seeds of each configuration. "
        "Agreement and KL (nats) compare the student with the teacher at temperature 1 "
        "on the training split (as it is), the test split and a sample of the "
        "distillation set; CKA is the linear CKA of their penultimate features on the "
        "test split; the distill loss is the loss the student minimized, on the "
        "distillation-set sample.")


def csv_text(rows):
    """The rows as CSV: settings, metrics, wall time, then every config field."""
    setting_names = _ordered_union(row["settings"] for row in rows)
    metric_names = _ordered_union(row["metrics"] for row in rows)
    flat_configs = [_flatten(row["config"], "config") for row in rows]
    config_names = _ordered_union(flat_configs)
    header = ["experiment", "run_id", *setting_names, *metric_names, "wall_s", *config_names]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row, config in zip(rows, flat_configs):
        values = {
            "experiment": row["experiment"],
            "run_id": row["run_id"],
            "wall_s": row["wall_s"],
            **row["settings"],
            **row["metrics"],
            **config,
        }
        writer.writerow([_cell(values.get(name)) for name in header])
    return out.getvalue()


def write_results(rows, output_dir, description="", paper_numbers=()):
    """Writes `results.csv`, `results.json` and `summary.md` into `output_dir`
    (with the recipes' table, `comparison_markdown`, for a sweep over recipes,
    and the paper's numbers beside ours, `paper_markdown`, given
    `paper_numbers`: `keras_kd.experiments.PaperNumber`s)."""
    export.write_text(csv_text(rows), os.path.join(output_dir, "results.csv"))
    export.write_json(rows, os.path.join(output_dir, "results.json"))
    summary = summary_markdown(rows, description)
    beside_paper = paper_markdown(rows, paper_numbers)
    if beside_paper:
        summary += "\n## The paper's numbers beside ours\n\n" + beside_paper
    comparison = comparison_markdown(rows)
    if comparison:
        summary += "\n## Recipes against plain distillation\n\n" + comparison
    export.write_text(summary, os.path.join(output_dir, "summary.md"))


def student_seconds(row):
    """What a run's student cost: the wall seconds of building its distillation
    set (teacher outputs of cached views included) and of fitting it."""
    timing = row.get("timing") or {}
    return float(timing.get("distill_s", 0.0) + timing.get("distillation_set_s", 0.0))


def _configurations(rows):
    groups = {}
    for row in rows:
        key = json.dumps(configuration(row["settings"]), sort_keys=True, default=str)
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def _teacher(row):
    config = row["config"]
    return (config.get("members"), config.get("teacher_arch"))


def _recipe(row):
    """`(recipe, recipe_budget)` of a row: its sweep's settings first (a row
    reused from a run of the same settings records that run's config)."""
    settings, config = row["settings"], row["config"]
    return (settings.get("recipe", config.get("recipe", "plain")),
            settings.get("recipe_budget", config.get("recipe_budget", "own")))


def recipe_comparison(rows):
    """One entry per configuration of a sweep over recipes, beside plain distillation.

    Plain distillation, for each teacher (members and architecture), is the
    configuration with `recipe="plain"` and the fewest epochs. Differences
    to it are paired by seed (the same teacher).

    Returns:
        A list of dicts: `label`, `teacher` (members), `recipe`,
        `recipe_budget`, `steps_x` (the student's epochs over plain's),
        `agreement` and `gap` (`1 - agreement`), each `(mean, std)` over
        seeds, `vs_plain` (paired difference, `(mean, std)`), `closed` (the
        share of plain's gap to 100% closed, from the means), `seconds`
        (mean student seconds) and `cost_x` (over plain's); `None` where
        the sweep has no plain configuration for the teacher.
    """
    groups = _configurations(rows)
    plain = {}
    for group in groups:
        config = group[0]["config"]
        if _recipe(group[0])[0] != "plain":
            continue
        teacher = _teacher(group[0])
        if teacher not in plain or config["epochs"] < plain[teacher][0]["config"]["epochs"]:
            plain[teacher] = group
    entries = []
    for group in groups:
        config = group[0]["config"]
        base = plain.get(_teacher(group[0]))
        agreement = _stats([row["metrics"]["test_agreement"] for row in group])
        entry = {
            "label": label(group[0]["settings"]),
            "teacher": config.get("members"),
            "recipe": _recipe(group[0])[0],
            "recipe_budget": _recipe(group[0])[1],
            "agreement": agreement,
            "gap": (1.0 - agreement[0], agreement[1]),
            "seconds": float(np.mean([student_seconds(row) for row in group])),
            "seeds": len(group),
            "steps_x": None, "vs_plain": None, "closed": None, "cost_x": None,
        }
        if base is not None:
            base_agreement = float(np.mean([row["metrics"]["test_agreement"] for row in base]))
            by_seed = {row["settings"].get("seed"): row for row in base}
            paired = [row["metrics"]["test_agreement"]
                      - by_seed[row["settings"].get("seed")]["metrics"]["test_agreement"]
                      for row in group if row["settings"].get("seed") in by_seed]
            base_seconds = float(np.mean([student_seconds(row) for row in base]))
            entry.update(
                steps_x=config["epochs"] / base[0]["config"]["epochs"],
                vs_plain=_stats(paired) if paired else None,
                closed=(agreement[0] - base_agreement) / (1.0 - base_agreement)
                if base_agreement < 1.0 else None,
                cost_x=entry["seconds"] / base_seconds if base_seconds else None,
            )
        entries.append(entry)
    return entries


def _stats(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _points(value, digits=1):
    return "" if value is None else f"{100 * value[0]:+.{digits}f} ± {100 * value[1]:.{digits}f}"


def comparison_markdown(rows):
    """The recipes' table: per configuration, test agreement, its gap to 100%,
    the paired difference to plain distillation, the share of plain's gap
    closed, the student's steps and seconds over plain's; `""` for a sweep
    over no recipe."""
    if len({_recipe(row)[0] for row in rows}) < 2:
        return ""
    table = []
    for entry in recipe_comparison(rows):
        mean, std = entry["agreement"]
        cells = [
            entry["label"], str(entry["teacher"]),
            entry["recipe"] + (" (equal steps)" if entry["recipe_budget"] == "equal" else ""),
            "" if entry["steps_x"] is None else f"{entry['steps_x']:g}",
            f"{100 * mean:.1f} ± {100 * std:.1f}", f"{100 * entry['gap'][0]:.1f}",
            _points(entry["vs_plain"]),
            "" if entry["closed"] is None else f"{100 * entry['closed']:.0f}%",
            f"{entry['seconds']:.0f}",
            "" if entry["cost_x"] is None else f"{entry['cost_x']:.1f}",
        ]
        table.append(cells)
    return _markdown_table(
        ["configuration", "members", "recipe", "steps (x plain)", "test agreement (%)",
         "gap to 100% (points)", "vs plain (points, paired)", "plain's gap closed",
         "student s", "cost (x plain)"],
        table,
        "Plain distillation is, per teacher, the plain recipe at the fewest epochs; "
        "differences to it are paired by seed (the same teacher). The gap closed is "
        "(agreement - plain's) / (100% - plain's), from the means. Student seconds: "
        "building the distillation set (the teacher's outputs on cached views included) "
        "and fitting the student, on this machine, mean over seeds.")


def paper_markdown(rows, numbers):
    """The paper's numbers (`keras_kd.experiments.PaperNumber`s) beside ours
    and our reference student's, one line per number and configuration it is
    stated for; `""` where none is."""
    entries = paper_lib.paper_comparison(summarize(rows), numbers)
    if not entries:
        return ""
    titles = dict(SUMMARY_COLUMNS)
    table = []
    for entry in entries:
        number = entry["number"]
        cells = [
            entry["label"], titles.get(number.metric, number.metric), number.text(),
            number.source, _mean_std(entry["ours"]) or "not measured", str(entry["runs"]),
            "" if entry["difference"] is None else f"{entry['difference']:+.4f}",
            _mean_std(entry["reference"]),
        ]
        table.append(cells)
    return _markdown_table(
        ["configuration", "metric", "the paper", "where", "ours", "runs", "ours - paper",
         "our reference"],
        table,
        "The paper's numbers as it states them (fractions; KL in nats; in parentheses the "
        "spread it gives; < and > are its bounds, ≈ its approximate numbers), beside our "
        "mean ± standard deviation over the seeds of each configuration it states them "
        "for, and our reference student's (section 3.2: the same procedure from an "
        "independent teacher). The difference is a measurement, not a verdict: the "
        "paper's runs and ours share settings, not code or hardware.")


def _markdown_table(titles, table, note):
    """A Markdown table of `table`'s rows of cells under `titles`, then `note`."""
    lines = ["| " + " | ".join(titles) + " |", "|---" * len(titles) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    return "\n".join([*lines, "", note]) + "\n"


def _mean_std(value):
    return "" if value is None else f"{value[0]:.4f} ± {value[1]:.4f}"


def _ordered_union(dicts):
    names = {}
    for entry in dicts:
        names.update(dict.fromkeys(entry))
    return list(names)


def _flatten(value, prefix):
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return json.dumps(value)
    return value
