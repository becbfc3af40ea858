"""PNG plots of a sweep's results (matplotlib, drawn off-screen)."""

import os
import warnings

import numpy as np

from keras_kd.experiments import results as results_lib

SPLIT_STYLES = {"train": "--", "test": "-", "distill": ":"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def write_plots(rows, output_dir):
    """Draws every plot that the rows have data for; returns the paths written.

    - `agreement_accuracy.png`: test agreement and test accuracies per configuration;
    - `train_vs_test_fidelity.png`: agreement and KL on train, test and distill;
    - `fidelity_vs_epochs.png`: train and test fidelity after each epoch;
    - `fidelity_vs_lambda.png`: for students initialized between a random
      point and the teacher (`student_init=interpolate:LAMBDA`), fidelity and
      the final distillation loss against `LAMBDA`;
    - `agreement_vs_<setting>.png`: for a sweep of one numeric setting (the
      seed aside), train and test agreement of student and control against it;
    - `calibration_vs_fidelity.png`: each run's student (and control) test
      NLL and ECE against its test agreement with the teacher;
    - `loss_plane.png`: for runs with a loss plane, the distillation loss on
      the plane through the student's initial and final weights and the
      teacher's, as contours (the first seed of each configuration);
    - `agreement_vs_cost.png`: for a sweep over recipes, each configuration's
      test agreement against its student's wall seconds, a panel per teacher.
    """
    if not rows:
        return []
    summary = results_lib.summarize(rows)
    written = []
    for name, draw in (
        ("agreement_accuracy.png", lambda path: agreement_accuracy(summary, path)),
        ("train_vs_test_fidelity.png", lambda path: train_vs_test_fidelity(summary, path)),
        ("fidelity_vs_epochs.png", lambda path: fidelity_vs_epochs(rows, path)),
        ("fidelity_vs_lambda.png", lambda path: fidelity_vs_lambda(rows, path)),
        ("calibration_vs_fidelity.png", lambda path: calibration_vs_fidelity(rows, path)),
        ("loss_plane.png", lambda path: loss_planes(rows, path)),
        ("agreement_vs_cost.png", lambda path: agreement_vs_cost(rows, path)),
    ):
        path = os.path.join(output_dir, name)
        if draw(path):
            written.append(path)
    setting = numeric_axis(rows)
    if setting:
        path = os.path.join(output_dir, f"agreement_vs_{setting}.png")
        if agreement_vs_setting(summary, setting, path):
            written.append(path)
    return written


def numeric_axis(rows):
    """The one swept setting besides the seed, if it is numeric; else `None`."""
    names = {name for row in rows for name in results_lib.configuration(row["settings"])}
    if len(names) != 1:
        return None
    (name,) = names
    values = [row["settings"].get(name) for row in rows]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return name if numeric and len(set(values)) > 1 else None


def agreement_vs_setting(summary, setting, path):
    """Train and test agreement (student and control) against a numeric setting."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(6.5, 4.2))
    xs = [group["settings"][setting] for group in summary]
    order = np.argsort(xs)
    xs = np.array(xs, dtype=float)[order]
    for metric, style, legend in (
        ("train_agreement", "--o", "student, train"),
        ("test_agreement", "-o", "student, test"),
        ("train_control_agreement", "--s", "control, train"),
        ("test_control_agreement", "-s", "control, test"),
    ):
        if not all(metric in group["metrics"] for group in summary):
            continue
        means = np.array([group["metrics"][metric][0] for group in summary])[order]
        stds = np.array([group["metrics"][metric][1] for group in summary])[order]
        axis.errorbar(xs, means, yerr=stds, fmt=style, capsize=3, label=legend,
                      color="tab:gray" if "control" in metric else "tab:blue")
    axis.set_xlabel(setting)
    axis.set_ylabel("top-1 agreement with the teacher")
    axis.set_title(f"Agreement against {setting} (mean ± std over seeds)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


def calibration_vs_fidelity(rows, path):
    """Test NLL and ECE of each run's student and control against test agreement."""
    if not any("test_student_nll" in row["metrics"] for row in rows):
        return False
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.2))
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(results_lib.label(row["settings"]) for row in rows))
    for axis, metric, ylabel in ((axes[0], "nll", "test NLL"), (axes[1], "ece", "test ECE")):
        for index, name in enumerate(labels):
            members = [row["metrics"] for row in rows
                       if results_lib.label(row["settings"]) == name]
            axis.scatter([m["test_agreement"] for m in members],
                         [m[f"test_student_{metric}"] for m in members],
                         color=colors[index % len(colors)], label=name, s=25)
        controls = [row["metrics"] for row in rows if "test_control_agreement" in row["metrics"]]
        axis.scatter([m["test_control_agreement"] for m in controls],
                     [m[f"test_control_{metric}"] for m in controls], marker="x",
                     color="gray", label="control", s=25)
        axis.set_xlabel("test agreement with the teacher")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("Calibration against fidelity (one point per run)")
    return _save(figure, path)


def loss_planes(rows, path):
    """Contours of the distillation loss on each configuration's plane."""
    firsts = {}
    for row in rows:
        if row.get("loss_plane"):
            firsts.setdefault(results_lib.label(row["settings"]), row["loss_plane"])
    if not firsts:
        return False
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, len(firsts), figsize=(5.2 * len(firsts), 4.4),
                                   squeeze=False)
    markers = {"student_init": ("o", "student start"), "student_final": ("*", "student end"),
               "teacher": ("^", "teacher")}
    for axis, (name, plane) in zip(axes[0], firsts.items()):
        loss = np.log10(np.maximum(np.array(plane["loss"], dtype=float), 1e-6))
        contours = axis.contourf(plane["x"], plane["y"], loss, levels=20, cmap="viridis")
        figure.colorbar(contours, ax=axis, label="log10 distillation loss")
        for point, (marker, legend) in markers.items():
            x, y = plane["points"][point]
            value = plane["point_loss"][point]
            axis.plot(x, y, marker, color="white", markeredgecolor="black", markersize=11,
                      label=f"{legend} ({value:.3g})")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("along the student's path (weight-space distance)")
        axis.set_ylabel("toward the teacher (weight-space distance)")
        axis.legend(fontsize=7, loc="upper left")
    figure.suptitle("Distillation loss on the plane through the student's and teacher's weights")
    return _save(figure, path)


def agreement_vs_cost(rows, path):
    """Test agreement (mean ± std) against the student's wall seconds, one
    point per recipe configuration, a panel per teacher; plain
    distillation's agreement as a dashed line."""
    if not results_lib.comparison_markdown(rows):
        return False  # not a sweep over recipes
    entries = results_lib.recipe_comparison(rows)
    teachers = sorted({entry["teacher"] for entry in entries}, key=str)
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, len(teachers), figsize=(6.2 * len(teachers), 4.6),
                                   squeeze=False)
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    recipes = list(dict.fromkeys(entry["recipe"] for entry in entries))
    for axis, teacher in zip(axes[0], teachers):
        for entry in (entry for entry in entries if entry["teacher"] == teacher):
            mean, std = entry["agreement"]
            equal = entry["recipe_budget"] == "equal"
            name = entry["recipe"] + (" (equal steps)" if equal else "")
            steps = "" if entry["steps_x"] is None else f", {entry['steps_x']:g}x steps"
            axis.errorbar(entry["seconds"], mean, yerr=std, capsize=3,
                          marker="s" if equal else "o", markersize=7,
                          color=colors[recipes.index(entry["recipe"]) % len(colors)],
                          label=name + steps)
            if entry["recipe"] == "plain" and entry["steps_x"] == 1:
                axis.axhline(mean, color="gray", linestyle="--", linewidth=1)
        axis.set_xlim(0, 1.1 * max(entry["seconds"] for entry in entries))
        axis.set_xlabel("student wall seconds (distillation set + fit)")
        axis.set_ylabel("test agreement with the teacher")
        axis.set_title(f"{teacher}-member teacher", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower right")
    figure.suptitle("Recipes: test agreement against compute (mean ± std over seeds)")
    return _save(figure, path)


def _grouped_bars(axis, summary, series, ylabel):
    """Bars with standard-deviation whiskers, one group per configuration."""
    positions = np.arange(len(summary))
    width = 0.8 / len(series)
    for index, (metric, legend) in enumerate(series):
        means = [group["metrics"].get(metric, (np.nan, 0))[0] for group in summary]
        stds = [group["metrics"].get(metric, (np.nan, 0))[1] for group in summary]
        axis.bar(positions + (index - (len(series) - 1) / 2) * width, means, width,
                 yerr=stds, capsize=2, label=legend)
    axis.set_xticks(positions)
    axis.set_xticklabels([group["label"] for group in summary], rotation=30, ha="right",
                         fontsize=8)
    axis.set_ylabel(ylabel)
    axis.grid(axis="y", alpha=0.3)


def _save(figure, path):
    pyplot = _pyplot()
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    pyplot.close(figure)
    return True


def agreement_accuracy(summary, path):
    """Test agreement (the student's and the control's), student and teacher
    test accuracy, per configuration."""
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(max(6, 0.9 * len(summary) + 3), 4))
    series = [
        ("test_agreement", "test agreement"),
        ("test_control_agreement", "control's test agreement"),
        ("test_student_accuracy", "student test accuracy"),
        ("test_teacher_accuracy", "teacher test accuracy"),
    ]
    series = [(name, title) for name, title in series
              if any(name in group["metrics"] for group in summary)]
    _grouped_bars(axis, summary, series, "fraction")
    low = min(
        group["metrics"][name][0] - group["metrics"][name][1]
        for group in summary
        for name, _ in series
        if name in group["metrics"]
    )
    axis.set_ylim(max(0.0, low - 0.05), 1.0)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title("Agreement with the teacher and accuracy (test split, mean ± std)")
    return _save(figure, path)


def train_vs_test_fidelity(summary, path):
    """Agreement and predictive KL on the train, test and distill splits."""
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, 2, figsize=(max(9, 1.6 * len(summary) + 4), 4))
    for axis, metric, ylabel in (
        (axes[0], "agreement", "top-1 agreement"),
        (axes[1], "predictive_kl", "predictive KL (nats)"),
    ):
        series = [(f"{split}_{metric}", split) for split in ("train", "test", "distill")]
        series += [(f"{split}_control_{metric}", f"{split} (control)")
                   for split in ("train", "test")
                   if any(f"{split}_control_{metric}" in group["metrics"] for group in summary)]
        _grouped_bars(axis, summary, series, ylabel)
        axis.legend(fontsize=8)
    low = min(
        group["metrics"][name][0] - group["metrics"][name][1]
        for group in summary
        for name in ("train_agreement", "test_agreement", "distill_agreement")
        if name in group["metrics"]
    )
    axes[0].set_ylim(max(0.0, low - 0.02), 1.0)
    axes[1].set_yscale("log")
    axes[0].set_title("Fidelity on each split (mean ± std)")
    return _save(figure, path)


def _mean_curve(rows, key):
    curves = [row["history"][key] for row in rows if key in row.get("history", {})]
    if not curves:
        return None, None
    length = min(len(curve) for curve in curves)
    # Epochs a callback skipped are None: NaN here, so they leave gaps.
    stacked = np.array([curve[:length] for curve in curves], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch no run measured
        return np.nanmean(stacked, axis=0), np.nanstd(stacked, axis=0)


def fidelity_vs_epochs(rows, path):
    """Train and test agreement and KL after each epoch, per configuration."""
    groups = {}
    for row in rows:
        groups.setdefault(results_lib.label(row["settings"]), []).append(row)
    if not any("test_agreement" in row.get("history", {}) for row in rows):
        return False
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.5))
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, members) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        for axis, metric in ((axes[0], "agreement"), (axes[1], "predictive_kl")):
            for split in ("test", "train"):
                mean, std = _mean_curve(members, f"{split}_{metric}")
                if mean is None:
                    continue
                # Only the measured epochs (a curve may skip some: --fidelity_curve).
                epochs = np.arange(1, len(mean) + 1)
                kept = ~np.isnan(mean)
                epochs, mean, std = epochs[kept], mean[kept], std[kept]
                axis.plot(epochs, mean, SPLIT_STYLES[split], color=color, marker=".",
                          label=f"{name} ({split})" if axis is axes[0] else None)
                axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.12)
    axes[0].set_ylabel("top-1 agreement")
    axes[1].set_ylabel("predictive KL (nats)")
    axes[1].set_yscale("log")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.set_xscale("log")  # the default curve doubles its epochs from point to point
        axis.grid(alpha=0.3)
    axes[0].set_title("Fidelity during distillation (solid: test, dashed: train)")
    figure.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(figure, path)


def _interpolation(row):
    init = str(row["config"].get("student_init", "random"))
    if not init.startswith("interpolate:"):
        return None
    return float(init.partition(":")[2])


def fidelity_vs_lambda(rows, path):
    """Fidelity and final distillation loss against the initialization's `lambda`."""
    interpolated = [row for row in rows if _interpolation(row) is not None]
    if not interpolated:
        return False
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.2))
    sources = sorted({row["config"].get("student_init_from", "teacher") for row in interpolated})
    colors = {"train": "tab:blue", "test": "tab:orange", "distill": "tab:green"}
    markers = {"teacher": "o", "teacher_init": "s"}
    for source in sources:
        by_lambda = {}
        for row in interpolated:
            if row["config"].get("student_init_from", "teacher") == source:
                by_lambda.setdefault(_interpolation(row), []).append(row)
        lambdas = sorted(by_lambda)

        def stats(metric):
            values = [[row["metrics"][metric] for row in by_lambda[lam]] for lam in lambdas]
            return np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])

        for split in ("train", "test", "distill"):
            mean, std = stats(f"{split}_agreement")
            axes[0].errorbar(lambdas, mean, yerr=std, color=colors[split],
                             linestyle=SPLIT_STYLES[split], marker=markers.get(source, "o"),
                             capsize=2, label=f"{split}, toward {source}")
        mean, std = stats("distill_distillation_loss")
        axes[1].errorbar(lambdas, mean, yerr=std, marker=markers.get(source, "o"),
                         capsize=2, label=f"toward {source}")
    axes[0].set_ylabel("top-1 agreement")
    axes[0].set_title("Fidelity vs initialization (lambda * target + (1 - lambda) * random)")
    axes[1].set_ylabel("final distillation loss (distillation set)")
    axes[1].set_yscale("log")
    for axis in axes:
        axis.set_xlabel("lambda")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save(figure, path)
