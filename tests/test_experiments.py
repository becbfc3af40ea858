import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_kd import experiments
from keras_kd.experiments import results


def _report(agreement, accuracy, history_length=3):
    curve = [None, *np.linspace(0.5, agreement, history_length - 1)]  # epoch 1 not measured
    return {
        "config": {"members": 1, "runtime": {"strategy": "default"}, "student_init": "random"},
        "splits": {
            split: {"agreement": agreement - offset, "predictive_kl": 0.1 + offset,
                    "student_accuracy": accuracy, "teacher_accuracy": 0.99}
            for split, offset in (("train", 0.0), ("test", 0.02), ("distill", 0.01))
        },
        "teacher_members": [{"test_accuracy": 0.98}, {"test_accuracy": 0.96}],
        "history": {"test_agreement": curve, "train_agreement": curve,
                    "epoch": list(range(1, history_length + 1))},
        "timing": {"distill_s": 1.0},
    }


def test_grids_are_joined_products_times_seeds_without_repeats():
    points = experiments.expand_grids(
        [{"temperature": [1, 4], "alpha": [0.0, 0.5]}, {"temperature": [4]}], seeds=[0, 1]
    )
    assert len(points) == 10  # 2 x 2 products and one new point, times 2 seeds
    assert points[0] == {"temperature": 1, "alpha": 0.0, "seed": 0}
    assert points[-1] == {"temperature": 4, "seed": 1}
    assert experiments.expand_grids([], seeds=[3]) == [{"seed": 3}]
    with pytest.raises(ValueError, match="seed"):
        experiments.expand_grids([{"members": [1]}], seeds=[])
    with pytest.raises(ValueError, match="'members' has no values"):
        experiments.expand_grids([{"members": []}], seeds=[0])


def test_run_ids_are_unique_and_safe():
    ids = {experiments.run_id(point) for point in experiments.expand_grids(
        [{"policy": ["crop_flip+mixup", "gan"], "student_init": ["interpolate:0.5", "random"]}],
        seeds=[0, 1],
    )}
    assert len(ids) == 8
    assert all("/" not in name and ":" not in name and " " not in name for name in ids)


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = [
        results.result_row("demo", f"m{m}s{s}", {"members": m, "seed": s},
                           _report(0.90 + 0.01 * s + 0.05 * (m == 3), 0.95), wall_s=2.0)
        for m in (1, 3) for s in (0, 1, 2)
    ]
    summary = results.summarize(rows)
    assert [group["label"] for group in summary] == ["members=1", "members=3"]
    assert [group["runs"] for group in summary] == [3, 3]
    mean, std = summary[1]["metrics"]["test_agreement"]
    assert mean == pytest.approx(0.94)
    assert std == pytest.approx(np.std([0.93, 0.94, 0.95], ddof=1))
    assert summary[0]["metrics"]["teacher_members_test_accuracy"][0] == pytest.approx(0.97)
    table = results.summary_markdown(rows, "# Demo")
    assert table.startswith("# Demo")
    assert "| members=3 | 3 | 0.9900 ± 0.0000 | 0.9500 ± 0.0000 | 0.9400 ± 0.0100 |" in table


@pytest.mark.slow
def test_sweep_skips_finished_runs_and_writes_every_file(tmp_path):
    calls = []

    def job(config):
        calls.append(config)
        if config == "broken":
            raise RuntimeError("killed")
        return _report(0.9 + 0.01 * len(calls), 0.95)

    runs = [experiments.Run(experiments.run_id({"x": i, "seed": 0}), {"x": i, "seed": 0}, c)
            for i, c in enumerate(["a", "b", "broken"])]
    with pytest.raises(RuntimeError):
        experiments.run_sweep(runs, str(tmp_path), job, experiment="demo", log=lambda _: None)
    # The two finished runs are kept; the tables hold them.
    with open(tmp_path / "results.json") as f:
        assert [row["run_id"] for row in json.load(f)] == ["x=0,seed=0", "x=1,seed=0"]

    runs[2] = experiments.Run(runs[2].run_id, runs[2].settings, "c")
    lines = []
    rows = experiments.run_sweep(runs, str(tmp_path), job, experiment="demo", log=lines.append)
    assert calls == ["a", "b", "broken", "c"]
    assert [line.endswith("skipped") for line in lines] == [True, True, False]
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["run_id"] for r in table] == [row["run_id"] for row in rows]
    assert {"x", "seed", "test_agreement", "wall_s", "config.members",
            "config.runtime.strategy"} <= set(table[0])
    assert "| x=2 | 1 |" in (tmp_path / "summary.md").read_text()
    for name in ("agreement_accuracy", "train_vs_test_fidelity", "fidelity_vs_epochs"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert not (tmp_path / "fidelity_vs_lambda.png").exists()  # no interpolated runs

    with pytest.raises(ValueError, match="repeated"):
        experiments.run_sweep(runs + runs[:1], str(tmp_path), job)


@pytest.mark.slow
def test_lambda_plot_is_drawn_for_interpolated_students(tmp_path):
    rows = []
    for lam in (0.0, 0.5, 1.0):
        for source in ("teacher", "teacher_init"):
            report = _report(0.8 + 0.15 * lam, 0.9)
            report["config"].update(student_init=f"interpolate:{lam}", student_init_from=source)
            report["splits"]["distill"]["distillation_loss"] = 0.5 - 0.4 * lam
            settings = {"student_init": f"interpolate:{lam}", "student_init_from": source, "seed": 0}
            rows.append(results.result_row("opt", experiments.run_id(settings), settings, report, 1.0))
    written = experiments.write_plots(rows, str(tmp_path))
    assert os.path.join(str(tmp_path), "fidelity_vs_lambda.png") in written
    assert len(written) == 4


@pytest.mark.slow
def test_a_numeric_sweep_a_loss_plane_and_calibration_are_plotted(tmp_path):
    rows = []
    for epochs in (10, 30):
        for seed in (0, 1):
            report = _report(0.8 + 0.005 * epochs, 0.9)
            for split in report["splits"].values():
                split.update(control_agreement=0.85, student_nll=0.5, control_nll=0.4,
                             student_ece=0.05, control_ece=0.03)
            report["loss_plane"] = {
                "x": [0.0, 1.0, 2.0], "y": [0.0, 1.0], "loss": [[1.0, 0.5, 0.2], [0.3, 0.1, 0.4]],
                "points": {"student_init": [0.0, 0.0], "student_final": [2.0, 0.0],
                           "teacher": [1.0, 1.0]},
                "point_loss": {"student_init": 1.0, "student_final": 0.2, "teacher": 0.0},
            }
            settings = {"epochs": epochs, "seed": seed}
            rows.append(results.result_row("opt", experiments.run_id(settings), settings,
                                           report, 1.0))
    assert rows[0]["loss_plane"]["point_loss"]["teacher"] == 0.0
    written = {os.path.basename(path) for path in experiments.write_plots(rows, str(tmp_path))}
    assert {"agreement_vs_epochs.png", "calibration_vs_fidelity.png",
            "loss_plane.png"} <= written
    assert experiments.plots.numeric_axis(rows) == "epochs"
    assert experiments.plots.numeric_axis([{"settings": {"policy": "gan", "seed": 0}}]) is None


def _keyed_job(calls):
    def job(config):
        calls.append(config)
        report = _report(0.9, 0.95)
        report["config"]["output_dir"] = f"elsewhere/{config}"
        return report
    return job


def _runs(configs):
    return [experiments.Run(experiments.run_id({"x": i, "seed": 0}), {"x": i, "seed": 0}, c)
            for i, c in enumerate(configs)]


@pytest.mark.slow  # each computed run ends in clear_session and gc.collect: ~1 s in a full session
def test_a_sweep_reuses_identical_runs_of_any_sweep_by_their_key(tmp_path):
    calls, reuse_dir = [], str(tmp_path / "by_key")
    sweep = dict(job=_keyed_job(calls), key=lambda config: f"key-{config}",
                 reuse_dir=reuse_dir, plot=False, tables=False)
    first = experiments.run_sweep(_runs(["a", "b"]), str(tmp_path / "first"), experiment="one",
                                  log=lambda _: None, **sweep)
    lines = []
    second = experiments.run_sweep(_runs(["b", "c"]), str(tmp_path / "second"),
                                   experiment="two", log=lines.append, **sweep)
    assert calls == ["a", "b", "c"]  # "b" was computed once, by the first sweep
    assert lines[0] == "[1/2] x=0,seed=0: reused the identical run elsewhere/b"
    assert second[0]["metrics"] == first[1]["metrics"]
    assert (second[0]["experiment"], second[0]["run_id"]) == ("two", "x=0,seed=0")
    assert second[0]["reused_from"] == "elsewhere/b" and "reused_from" not in second[1]
    with open(tmp_path / "second" / "runs" / "x=0,seed=0" / "result.json") as f:
        assert json.load(f)["settings"] == {"x": 0, "seed": 0}
    with pytest.raises(ValueError, match="reuse_dir needs a key"):
        experiments.run_sweep(_runs(["a"]), str(tmp_path), _keyed_job([]), reuse_dir=reuse_dir)


@pytest.mark.slow
def test_a_sweep_reruns_results_of_other_settings_and_damaged_ones(tmp_path):
    calls, lines = [], []
    runs, output_dir = _runs(["a", "b"]), str(tmp_path)
    experiments.run_sweep(runs, output_dir, _keyed_job(calls), key=lambda c: f"v1-{c}",
                          plot=False, tables=False, log=lambda _: None)
    (tmp_path / "runs" / "x=1,seed=0" / "result.json").write_text('{"metrics": {')
    rows = experiments.run_sweep(runs, output_dir, _keyed_job(calls), key=lambda c: f"v1-{c}",
                                 plot=False, tables=False, log=lines.append)
    assert calls == ["a", "b", "b"] and rows[1]["key"] == "v1-b"
    assert lines[0].endswith("finished earlier, skipped")
    assert "unreadable" in lines[1] and lines[1].endswith("running it again")
    lines.clear()
    experiments.run_sweep(runs, output_dir, _keyed_job(calls), key=lambda c: f"v2-{c}",
                          plot=False, tables=False, log=lines.append)
    assert calls == ["a", "b", "b", "a", "b"]
    assert "computed from other settings, data or code (key 'v1-a', now 'v2-a')" in lines[0]
    rows, missing = experiments.finished_rows(runs, output_dir, key=lambda c: f"v1-{c}")
    assert rows == [] and missing == ["x=0,seed=0", "x=1,seed=0"]


@pytest.mark.slow  # computed runs end in clear_session and gc.collect
def test_edited_incomplete_or_unsealed_results_are_run_again_never_served(tmp_path):
    calls, lines, reuse_dir = [], [], str(tmp_path / "by_key")
    runs, output_dir = _runs(["a", "b", "c"]), str(tmp_path / "sweep")
    sweep = dict(key=lambda c: f"k-{c}", reuse_dir=reuse_dir, plot=True, tables=True)
    experiments.run_sweep(runs, output_dir, _keyed_job(calls), log=lambda _: None, **sweep)
    kept = [tmp_path / "sweep" / "runs" / run.run_id / "result.json" for run in runs]
    edited = json.loads(kept[0].read_text())
    edited["metrics"]["test_agreement"] = 1.0  # a better number, typed in
    kept[0].write_text(json.dumps(edited))
    emptied = json.loads(kept[1].read_text())
    emptied["metrics"] = {}
    kept[1].write_text(json.dumps(emptied))
    unsealed = json.loads(kept[2].read_text())
    del unsealed["digest"]
    kept[2].write_text(json.dumps(unsealed))
    # The copies kept by key are damaged alike, so nothing is served from there either.
    for run, path in zip(runs, kept):
        (tmp_path / "by_key" / f"k-{run.config}.json").write_text(path.read_text())
    rows = experiments.run_sweep(runs, output_dir, _keyed_job(calls), log=lines.append, **sweep)
    assert calls == ["a", "b", "c", "a", "b", "c"]
    problems = [line for line in lines if line.endswith("running it again")]
    assert len(problems) == 3 and "edited or damaged" in problems[0]
    assert "its metrics lack ['test_agreement'" in problems[1]
    assert "has no digest" in problems[2]
    assert rows[0]["metrics"]["test_agreement"] != 1.0
    assert all(experiments.results.row_problem(row) is None for row in rows)


def _tiny_runs(saved_models_dir):
    import keras_kd

    base = keras_kd.config.build(keras_kd.jobs.DistillConfig, {
        "teacher_arch": "mlp", "teacher_epochs": 1, "student_arch": "mlp", "epochs": 2,
        "batch_size": 128, "saved_models_dir": str(saved_models_dir)})
    return experiments.grid_runs(base, [{"members": [1, 2]}], [0, 1],
                                 str(saved_models_dir / "sweep"))


@pytest.mark.slow
def test_runs_done_by_two_workers_are_the_runs_done_one_at_a_time(tmp_path):
    import functools

    import keras_kd

    def sweep(folder, workers):
        lines = []
        rows = experiments.run_sweep(
            _tiny_runs(tmp_path / folder), str(tmp_path / folder / "sweep"),
            functools.partial(keras_kd.jobs.distill.run, verbose=0), workers=workers,
            plot=False, key=keras_kd.jobs.distill.result_key,
            cost=keras_kd.jobs.DistillConfig.training_epochs, log=lines.append)
        return rows, lines

    one, _ = sweep("one", 1)
    two, lines = sweep("two", 2)
    assert len(lines) == 4 and all(" s, student test acc " in line for line in lines)
    # The rows keep the runs' order, whichever worker ended first.
    assert [row["run_id"] for row in two] == [row["run_id"] for row in one] == [
        "members=1,seed=0", "members=1,seed=1", "members=2,seed=0", "members=2,seed=1"]
    for alone, together in zip(one, two):
        assert together["metrics"] == alone["metrics"], alone["run_id"]
        assert together["key"] == alone["key"]
    with open(tmp_path / "two" / "sweep" / "results.json") as f:
        assert [row["run_id"] for row in json.load(f)] == [row["run_id"] for row in one]


def test_workers_are_checked_before_any_run(tmp_path):
    runs = [experiments.Run("a", {}, "a")]
    with pytest.raises(ValueError, match="workers must be a positive integer; got 0"):
        experiments.run_sweep(runs, str(tmp_path), lambda config: None, workers=0)
    assert not os.listdir(tmp_path)


def test_auto_workers_use_the_cores_of_a_machine_without_gpus(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert experiments.auto_workers() == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert experiments.auto_workers() == 2  # no GPU here: 2 measured faster than 1
    # Once TensorFlow's runtime runs, the threads stay.
    tf.constant(1.0).numpy()
    assert experiments.share_cores(2) is False


def _recipe_row(members, recipe, seed, agreement, epochs=480, budget="own", seconds=10.0):
    report = _report(agreement, 0.95)
    report["config"].update(members=members, teacher_arch="resnet8", recipe=recipe,
                            recipe_budget=budget, epochs=epochs)
    report["timing"] = {"distill_s": seconds - 1.0, "distillation_set_s": 1.0}
    settings = {"members": members, "recipe": recipe, "epochs": epochs, "seed": seed}
    if budget != "own":
        settings["recipe_budget"] = budget
    return results.result_row("gap", experiments.run_id(settings), settings, report, 1.0)


def test_recipes_are_set_against_plain_distillation_of_the_same_teacher(tmp_path):
    # Test agreement is the report's train agreement minus 0.02 (see `_report`).
    rows = [_recipe_row(m, "plain", s, 0.97 + 0.002 * s + 0.01 * (m == 3)) for m in (1, 3)
            for s in (0, 1, 2)]
    rows += [_recipe_row(1, "patient", s, 0.985 + 0.004 * s, epochs=1920, seconds=40.0)
             for s in (0, 1, 2)]
    rows += [_recipe_row(1, "patient", s, 0.97, budget="equal", seconds=5.0) for s in (0, 1)]
    entries = {(e["teacher"], e["recipe"], e["recipe_budget"]): e
               for e in results.recipe_comparison(rows)}
    plain, patient = entries[(1, "plain", "own")], entries[(1, "patient", "own")]
    assert plain["agreement"][0] == pytest.approx(0.952) and plain["closed"] == 0.0
    assert patient["steps_x"] == 4 and patient["cost_x"] == pytest.approx(4.0)
    # Paired by seed: +0.015, +0.017, +0.019 over plain.
    assert patient["vs_plain"][0] == pytest.approx(0.017)
    assert patient["vs_plain"][1] == pytest.approx(0.002)
    assert patient["closed"] == pytest.approx(0.017 / 0.048)
    assert entries[(1, "patient", "equal")]["vs_plain"][0] == pytest.approx(-0.001)
    assert entries[(3, "plain", "own")]["agreement"][0] == pytest.approx(0.962)
    table = results.comparison_markdown(rows)
    assert "| members=1, recipe=patient, epochs=1920 | 1 | patient | 4 | 96.9 ± 0.4 | 3.1 | " \
        "+1.7 ± 0.2 | 35% | 40 | 4.0 |" in table
    assert "patient (equal steps)" in table
    results.write_results(rows, str(tmp_path))
    assert "## Recipes against plain distillation" in (tmp_path / "summary.md").read_text()
    assert os.path.join(str(tmp_path), "agreement_vs_cost.png") in experiments.write_plots(
        rows, str(tmp_path))
    assert results.comparison_markdown(rows[:6]) == ""  # no recipe but plain: no table
    # A row reused from another experiment's run records that run's config (recipe plain):
    # the sweep's settings name its recipe.
    reused = _recipe_row(3, "function_matching", 0, 0.99)
    reused["config"]["recipe"] = "plain"
    (entry,) = [e for e in results.recipe_comparison(rows + [reused]) if e["teacher"] == 3
                and e["recipe"] == "function_matching"]
    assert entry["vs_plain"][0] == pytest.approx(0.99 - 0.98)


def test_the_papers_numbers_sit_beside_the_configurations_they_are_stated_for(tmp_path):
    # Test agreement is the report's train agreement minus 0.02 (see `_report`).
    rows = [
        results.result_row("demo", f"t{t}s{s}", {"temperature": t, "seed": s},
                           _report(0.90 + 0.01 * s + 0.05 * (t == 4.0), 0.95), wall_s=2.0)
        for t in (1.0, 4.0) for s in (0, 1, 2)
    ]
    for row in rows[3:]:
        row["metrics"]["test_reference_agreement"] = 0.9
    stated = experiments.PaperNumber({"temperature": 4.0}, "test_agreement", 0.845,
                                     source="section 5.1")
    bound = experiments.PaperNumber({}, "test_agreement", 0.8, relation="<", source="section 6.1")
    spread = experiments.PaperNumber({"temperature": 1.0}, "test_predictive_kl", 0.836,
                                     spread=0.01, source="Table 1")
    entries = experiments.paper.paper_comparison(results.summarize(rows), [stated, bound, spread])
    assert [(entry["label"], entry["number"]) for entry in entries] == [
        ("temperature=4", stated), ("temperature=1", bound), ("temperature=4", bound),
        ("temperature=1", spread)]
    assert entries[0]["ours"][0] == pytest.approx(0.94)
    assert entries[0]["difference"] == pytest.approx(0.94 - 0.845)
    assert entries[0]["reference"] == (pytest.approx(0.9), 0.0)
    assert entries[1]["reference"] is None
    table = results.paper_markdown(rows, [stated, bound, spread])
    assert "| temperature=4 | test agreement | 0.8450 | section 5.1 | 0.9400 ± 0.0100 | 3 " \
        "| +0.0950 | 0.9000 ± 0.0000 |" in table
    assert "| temperature=1 | test agreement | < 0.8000 | section 6.1 | 0.8900 ± 0.0100 | 3 " \
        "| +0.0900 |  |" in table
    assert "| test KL | 0.8360 (0.0100) | Table 1 | 0.1200 ± 0.0000 |" in table
    assert results.paper_markdown(rows, []) == ""
    # A number of a metric no run measured says so rather than leaving the cell blank.
    unmeasured = experiments.PaperNumber({}, "test_linear_cka", 0.9)
    assert "not measured" in results.paper_markdown(rows, [unmeasured])
    results.write_results(rows, str(tmp_path), paper_numbers=[stated])
    assert "## The paper's numbers beside ours" in (tmp_path / "summary.md").read_text()
    results.write_results(rows, str(tmp_path))
    assert "paper's numbers" not in (tmp_path / "summary.md").read_text()


def test_a_papers_number_is_parsed_and_checked():
    assert experiments.paper.parse_stated("test_agreement=<0.8, distill_agreement=~.95") == [
        ("test_agreement", "<", 0.8, None), ("distill_agreement", "~", 0.95, None)]
    for text in ("test_agreement", "test_agreement=high", "=0.8", "", "a=0.8+-x"):
        with pytest.raises(ValueError, match="expected"):
            experiments.paper.parse_stated(text)
    with pytest.raises(ValueError, match="finite"):
        experiments.PaperNumber({}, "test_agreement", float("nan"))
    with pytest.raises(ValueError, match="relation"):
        experiments.PaperNumber({}, "test_agreement", 0.8, relation="<=")
    with pytest.raises(ValueError, match="spread"):
        experiments.PaperNumber({}, "test_agreement", 0.8, spread=0.1, relation="<")
    with pytest.raises(ValueError, match="metric"):
        experiments.PaperNumber({}, "test agreement", 0.8)
    number = experiments.PaperNumber({"members": 3}, "test_agreement", 0.8)
    assert experiments.paper.unmatched([number], [{"members": 1}, {"members": 3, "seed": 0}]) == []
    assert experiments.paper.unmatched([number], [{"members": 1}, {"alpha": 0.5}]) == [number]
