"""launch.sweep and launch.evaluate, run as a user runs them."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from absl import app

from tests.test_launch import ROOT
from tests.test_launch import TINY
from tests.test_launch import _run

EXPERIMENTS = sorted(
    name[:-4] for name in os.listdir(os.path.join(ROOT, "launch", "experiments"))
    if name.endswith(".cfg")
)
# Experiments on data that must be downloaded: not in the offline study; their code paths
# run under TFDS mock data (tests/test_text.py).
DOWNLOADED = ("imdb",) + tuple(name for name in EXPERIMENTS if name.startswith("cifar100_"))
# One seed by design: it chooses the study's budgets.
CALIBRATION = ("budget_calibration",)
STUDY = [name for name in EXPERIMENTS if name not in DOWNLOADED + CALIBRATION]


def test_the_study_has_its_experiments():
    assert [name for name in EXPERIMENTS if name not in DOWNLOADED[1:]] == [
        "augmentation", "budget_calibration", "capacity", "closing_the_gap", "data_recycling",
        "ensemble_size",
        "gan_growth", "imdb", "initialization", "loss_surface", "optimization",
        "self_distillation", "success", "temperature_alpha",
    ]


def test_make_study_runs_every_offline_experiment():
    with open(os.path.join(ROOT, "Makefile")) as f:
        makefile = f.read().replace("\\\n", " ")
    study = re.search(r"^STUDY := (.*)$", makefile, re.M).group(1).split()
    assert sorted(study) == sorted(STUDY + list(CALIBRATION))
    assert study[0] == "budget_calibration"  # it chose the budget the rest use
    # closing_the_gap's plain rows are self_distillation's runs, reused.
    assert study.index("closing_the_gap") > study.index("self_distillation")


def _dry_run(capsys, *args):
    """launch.sweep's flag parsing and main, in process (no training happens before
    a dry run's listing or a bad flag's error)."""
    from launch import sweep as sweep_app

    sweep_app.FLAGS.unparse_flags()
    sweep_app.parse_flags(["sweep", *args])
    capsys.readouterr()
    sweep_app.main([])
    return capsys.readouterr().out.strip().splitlines()


@pytest.mark.parametrize("experiment", [name for name in EXPERIMENTS
                                        if name not in CALIBRATION])
def test_every_experiment_lists_its_runs(tmp_path, capsys, experiment):
    out = _dry_run(capsys, f"--experiment={experiment}", "--dry_run",
                   f"--saved_models_dir={tmp_path}")
    seeds = {line.split("\t")[0].rpartition("seed=")[2] for line in out}
    trials = 10 if experiment == "cifar100_initialization" else 3  # Table 1's 10 trials
    assert seeds == {str(seed) for seed in range(trials)} and len(out) % trials == 0
    for line in out:
        run_id, status, command = line.split("\t")
        assert status == "todo"
        assert command.startswith("python -m launch.distill ")
        assert f"--output_dir={tmp_path}/experiments/{experiment}/runs/{run_id}" in command
    assert not (tmp_path / "experiments").exists()  # a dry run trains and writes nothing


def _planned_configs(tmp_path, experiment):
    from launch import sweep as sweep_app

    sweep_app.FLAGS.unparse_flags()
    sweep_app.parse_flags(["sweep", f"--experiment={experiment}",
                           f"--saved_models_dir={tmp_path}"])
    return sweep_app.planned_runs(str(tmp_path))


@pytest.mark.parametrize("experiment", STUDY)
def test_experiments_run_in_the_papers_settings(tmp_path, experiment):
    runs = _planned_configs(tmp_path, experiment)
    assert {run.settings["seed"] for run in runs} == {0, 1, 2}
    for run in runs:
        config, teacher = run.config, run.config.teacher_spec()
        student = config.student_spec()
        # The paper's recipes (App. A.3): teachers at lr 0.1 and batch 256, students and
        # the control at lr 0.05 and batch 128, SGD with coupled L2 decay 1e-4.
        assert (teacher.optimizer, teacher.lr, teacher.batch_size) == ("sgd", 0.1, 256)
        assert (teacher.weight_decay, teacher.weight_decay_type) == (1e-4, "coupled")
        assert student.batch_size == config.control_spec().batch_size == 128
        if "optimizer" not in run.settings:  # Adam only where it is the variable
            assert (student.optimizer, config.training.lr) == ("sgd", 0.05)
        # Without weight decay only in the paper's longer-training experiment (section 6.2).
        assert student.weight_decay == (0.0 if experiment == "optimization" else 1e-4)
        # The calibrated budget, in steps: 640 a teacher, 1,920 a student (4x where longer
        # training is the variable), whatever the sizes of their data.
        teacher_data = config.teacher.data_fraction * _num_train(config)
        assert teacher.epochs * -(-teacher_data // teacher.batch_size) == 640
        distill_data = {"teacher": teacher_data, "all": _num_train(config),
                        "fresh": _num_train(config) - teacher_data}[config.distillation_set.data]
        steps = config.student.epochs * -(-distill_data // student.batch_size)
        assert steps == (7680 if config.student.epochs == 1920 else 1920), run.run_id
        # The teachers' augmentation is the distillation set's baseline (App. A.1).
        assert teacher.augment == "shift"
        policy = config.distillation_set.policy
        assert policy == "shift" or policy.startswith("shift+") or (
            experiment == "augmentation" and policy == "identity")
        if experiment != "capacity":  # students of the members' architecture
            assert student.arch == teacher.arch
        if experiment == "closing_the_gap" and config.recipe != "plain" and not (
                config.recipe == "function_matching" and config.teacher.members == 3):
            # A recipe is read against the plain rows' references (the same teachers).
            assert not config.control.enabled and not config.reference.enabled
        else:
            assert config.control.enabled and config.reference.enabled


def test_closing_the_gap_sets_each_recipe_beside_plain_distillation(tmp_path):
    runs = _planned_configs(tmp_path, "closing_the_gap")
    rows = {(run.config.teacher.members, run.config.recipe, run.config.recipe_budget,
             run.config.student.epochs) for run in runs}
    # Every recipe in self-distillation, at its own budget and at plain's steps (patient
    # function matching there is function matching); the ensemble gets function matching,
    # augmentation's shift+mixup run.
    assert rows == {
        (1, "plain", "own", 480), (1, "function_matching", "own", 480),
        (1, "logit_matching", "own", 480), (1, "patient", "own", 1920),
        (1, "patient", "equal", 480), (1, "patient_function_matching", "own", 1920),
        (3, "plain", "own", 480), (3, "function_matching", "own", 480)}
    assert len(runs) == 24
    from keras_kd.jobs import distill

    matching = [distill.result_key(run.config) for run in runs
                if run.config.teacher.members == 3 and run.config.recipe == "function_matching"]
    augmentation = [distill.result_key(run.config) for run in _planned_configs(
        tmp_path, "augmentation") if run.config.distillation_set.policy == "shift+mixup"]
    assert matching == augmentation
    plain = [run for run in runs if run.config.recipe == "plain" and run.config.student.epochs == 480]
    reference_runs = {distill.result_key(run.config) for run in _planned_configs(
        tmp_path, "self_distillation")}
    assert {distill.result_key(run.config) for run in plain} == reference_runs


def _num_train(config):
    return int(dict(part.split("=") for part in config.data.dataset.split(":")[1].split(","))[
        "num_train"])


def test_the_budget_calibration_runs_the_papers_recipes_at_doubling_budgets(tmp_path):
    runs = _planned_configs(tmp_path, "budget_calibration")
    assert [run.config.student.epochs for run in runs] == [60, 120, 240, 480, 960]
    for run in runs:
        config, teacher, student = run.config, run.config.teacher_spec(), run.config.student_spec()
        assert (teacher.optimizer, teacher.lr, teacher.batch_size) == ("sgd", 0.1, 256)
        assert (student.optimizer, student.lr, student.batch_size) == ("sgd", 0.05, 128)
        assert teacher.weight_decay_type == student.weight_decay_type == "coupled"
        assert config.student.epochs == 1.5 * teacher.epochs  # the paper's 3x steps at half the batch
        assert config.distillation_set.policy == "shift"  # the teachers' augmentation


def test_the_initialization_experiment_scales_the_learning_rate(tmp_path, capsys):
    out = "\n".join(_dry_run(capsys, "--experiment=initialization", "--dry_run", "--seeds=0",
                             f"--saved_models_dir={tmp_path}"))
    for lam in ("0", "0.25", "0.375", "0.5", "0.75"):
        assert f"--student_init=interpolate:{lam} " in out
    # From exactly the teacher's initial weights (its Table 1), at the unscaled rate.
    assert "--student_init=interpolate:1 --student_init_from=teacher_init --seed" in out
    assert out.count("--init_scales_lr") == 5 and out.count("--student_arch=resnet8_ln") == 6


def test_smoke_scale_runs_each_grid_s_ends_for_one_epoch_and_one_seed(tmp_path, capsys):
    out = _dry_run(capsys, "--experiment=gan_growth", "--dry_run", "--scale=smoke",
                   f"--saved_models_dir={tmp_path}")
    assert [line.split("\t")[0] for line in out] == [
        "members=1,policy=shift,seed=0", "members=3,policy=shift,seed=0",
        "members=1,policy=shift+gan,synthetic_fraction=0.5,seed=0",
        "members=3,policy=shift+gan,synthetic_fraction=0.5,seed=0",
    ]
    assert all("--epochs=1 " in line and "--teacher_epochs=1 " in line for line in out)
    assert all(f"{tmp_path}/experiments/gan_growth-smoke/runs/" in line for line in out)


@pytest.mark.slow
def test_an_experiment_on_the_command_line_reads_like_launch_distill():
    result = _run("sweep", "--experiment=self_distillation", "--dry_run", "--seeds=4",
                  "--epochs=3")
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2  # two ensemble sizes, one seed; the command line overrides the flagfile
    assert all("--epochs=3 " in line and "--seed=4 " in line for line in lines)


@pytest.mark.parametrize("flags, message", [
    (["--grid=colour=red"], "'colour' is not a setting a sweep can vary"),
    (["--grid=members=0,2"], "bad value '0' of members"),
    (["--grid=members"], "expected 'name=v1,v2;other=v3'"),
    (["--grid=student_init=interpolate:0.5"], "needs a one-member teacher"),
    (["--seeds=a"], "--seeds must be integers"),
    (["--workers=0"], "--workers='0': expected a positive number of processes or 'auto'"),
    (["--workers=two"], "--workers='two': expected a positive number"),
    (["--workers=2", "--strategy=mirrored", "--cpu_replicas=2"],
     "runs under the 'mirrored' strategy span its devices or hosts"),
])
def test_bad_sweeps_fail_before_any_run(tmp_path, capsys, flags, message):
    with pytest.raises(app.UsageError, match=re.escape(message)):
        _dry_run(capsys, *TINY, *flags, f"--saved_models_dir={tmp_path}")
    assert not (tmp_path / "experiments").exists()


def test_shards_split_the_runs_disjointly_and_cover_them(tmp_path, capsys):
    base = ["--experiment=augmentation", "--dry_run", f"--saved_models_dir={tmp_path}"]
    every = [line.split("\t")[0] for line in _dry_run(capsys, *base)]
    shards = [[line.split("\t")[0] for line in _dry_run(capsys, *base, f"--shard={i}/4")]
              for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(every)
    assert all(shards) and max(map(len, shards)) - min(map(len, shards)) <= 1
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(app.UsageError, match=re.escape(f"--shard={bad!r}: expected 'i/N'")):
            _dry_run(capsys, *base, f"--shard={bad}")


@pytest.mark.slow
def test_an_unknown_experiment_is_named_with_the_known_ones(tmp_path):
    result = _run("sweep", "--experiment=nope", check=False)
    assert result.returncode != 0
    assert "unknown experiment 'nope'; expected one of ['augmentation'" in result.stderr


def _sweep_command(tmp_path):
    flagfile = tmp_path / "tiny.cfg"
    flagfile.write_text("\n".join([
        *TINY, "--members=1", "--grid=members=1,2", "--seeds=0,1",
        f"--saved_models_dir={tmp_path / 'saved'}",
    ]))
    return [sys.executable, "-m", "launch.sweep", f"--flagfile={flagfile}"]


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_reports_every_run(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    sweep_dir = tmp_path / "saved" / "experiments" / "sweep"
    first = sweep_dir / "runs" / "members=1,seed=0" / "result.json"
    process = subprocess.Popen(_sweep_command(tmp_path), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not first.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists()
    finished = first.stat().st_mtime_ns

    result = subprocess.run(_sweep_command(tmp_path), cwd=ROOT, env=env, capture_output=True,
                            text=True, check=True)
    assert "[1/4] members=1,seed=0: finished earlier, skipped" in result.stdout
    assert first.stat().st_mtime_ns == finished
    with open(sweep_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(row["members"], row["seed"]) for row in rows] == [
        ("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")
    ]
    assert all(0 <= float(row["test_agreement"]) <= 1 for row in rows)
    assert {"test_linear_cka", "distill_distillation_loss", "config.teacher_arch"} <= set(rows[0])
    summary = (sweep_dir / "summary.md").read_text()
    assert "| members=1 | 2 |" in summary and "| members=2 | 2 |" in summary
    for plot in ("agreement_accuracy", "train_vs_test_fidelity", "fidelity_vs_epochs"):
        assert (sweep_dir / f"{plot}.png").is_file()
    with open(sweep_dir / "results.json") as f:
        assert len(json.load(f)[0]["history"]["test_agreement"]) == 1

    # launch.evaluate re-measures a run's student against its teachers.
    run_dir = sweep_dir / "runs" / "members=2,seed=1"
    output = tmp_path / "evaluation.json"
    _run("evaluate", f"--run_dir={run_dir}", f"--output={output}")
    with open(output) as f:
        measured = json.load(f)["splits"]
    with open(run_dir / "report.json") as f:
        reported = json.load(f)["splits"]
    for split in ("train", "test"):
        for name, value in measured[split].items():
            assert value == pytest.approx(reported[split][name], abs=1e-6), (split, name)
    missing = _run("evaluate", f"--run_dir={tmp_path / 'nowhere'}", check=False)
    assert missing.returncode != 0 and "has no report.json" in missing.stderr


@pytest.mark.slow
def test_interpolating_all_the_way_starts_the_student_at_its_target(tmp_path):
    common = [*TINY, "--members=1", "--student_init=interpolate:1",
              f"--saved_models_dir={tmp_path}"]
    starts = {}
    for target in ("teacher", "teacher_init"):
        _run("distill", *common, f"--student_init_from={target}",
             f"--output_dir={tmp_path / target}")
        with open(tmp_path / target / "report.json") as f:
            report = json.load(f)
        starts[target] = report["student_start"]["test"]
    # An MLP has no BatchNorm to re-estimate: the student starts as the teacher.
    assert starts["teacher"]["agreement"] == 1.0 and starts["teacher"]["predictive_kl"] < 1e-6
    assert starts["teacher"]["student_accuracy"] == starts["teacher"]["teacher_accuracy"] > 0.6
    # From the teacher's initial weights, it starts as an untrained network.
    assert starts["teacher_init"]["agreement"] < 0.5
    assert starts["teacher_init"]["student_accuracy"] < 0.3


def test_a_sweep_is_built_from_configs_without_flags():
    import keras_kd

    base = keras_kd.jobs.DistillConfig()
    configs = [keras_kd.config.override(base, {"members": m, "seed": s})
               for m in (1, 3) for s in (0, 1)]
    runs = keras_kd.experiments.config_runs(configs, "out")
    assert [run.run_id for run in runs] == [
        "members=1,seed=0", "members=1,seed=1", "members=3,seed=0", "members=3,seed=1"]
    assert runs[2].config.teacher.members == 3 and runs[2].config.training.seed == 0
    assert runs[2].config.output.directory == os.path.join("out", "runs", "members=3,seed=0")
    grid = keras_kd.experiments.grid_runs(base, [{"members": [1, 3]}], [0, 1], "out")
    assert [run.config for run in grid] == [run.config for run in runs]


@pytest.mark.slow
def test_two_shards_merge_into_the_results_of_one_sweep(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def sweep(folder, *flags, check=True):
        command = [sys.executable, "-m", "launch.sweep", *TINY, "--grid=members=1,2",
                   "--seeds=0", "--deterministic", "--noplots",
                   f"--saved_models_dir={tmp_path / folder}", *flags]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              check=check)

    whole = tmp_path / "whole" / "experiments" / "sweep"
    sharded = tmp_path / "sharded" / "experiments" / "sweep"
    sweep("whole")
    first = sweep("sharded", "--shard=0/2")
    assert "write the tables with --merge" in first.stdout
    assert sorted(os.listdir(sharded / "runs")) == ["members=1,seed=0"]
    assert not (sharded / "results.json").exists()  # a shard writes no tables
    early = sweep("sharded", "--merge", check=False)
    assert early.returncode != 0 and "1 of 2 runs have no result" in early.stderr
    assert "members=2,seed=0" in early.stderr
    sweep("sharded", "--shard=1/2")
    sweep("sharded", "--merge")
    with open(whole / "results.json") as f:
        expected = {row["run_id"]: row["metrics"] for row in json.load(f)}
    with open(sharded / "results.json") as f:
        merged = {row["run_id"]: row["metrics"] for row in json.load(f)}
    assert sorted(merged) == sorted(expected) == ["members=1,seed=0", "members=2,seed=0"]
    for run_id, metrics in expected.items():
        assert merged[run_id] == pytest.approx(metrics, abs=1e-6), run_id
    summary = (sharded / "summary.md").read_text()
    assert "| members=1 | 1 |" in summary and "| members=2 | 1 |" in summary


@pytest.fixture(scope="module")
def shared_saved_models(tmp_path_factory):
    """One saved_models folder for the smoke runs, so experiments that share
    teachers, controls or a GAN reuse them, as a study run on one machine does."""
    return tmp_path_factory.mktemp("study")


@pytest.mark.slow
@pytest.mark.xdist_group("study")  # one pytest process of `make test-all`: one shared folder
@pytest.mark.parametrize("experiment", STUDY)
def test_every_experiment_runs_at_smoke_scale(shared_saved_models, experiment):
    _run("sweep", f"--experiment={experiment}", "--scale=smoke", "--verbose=0",
         f"--saved_models_dir={shared_saved_models}")
    sweep_dir = shared_saved_models / "experiments" / f"{experiment}-smoke"
    with open(sweep_dir / "results.json") as f:
        rows = json.load(f)
    assert rows and all(row["settings"]["seed"] == 0 for row in rows)
    for row in rows:
        config = row["config"]
        # One epoch each; a recipe with a longer schedule multiplies it.
        longer = (config["recipe"] in ("patient", "patient_function_matching")
                  and config["recipe_budget"] == "own")
        assert config["epochs"] == (4 if longer else 1) and config["teacher_epochs"] == 1
        if config["control"]:  # every run but a recipe read against plain's references
            assert 0 <= row["metrics"]["test_control_agreement"] <= 1
        assert 0 <= row["metrics"]["train_agreement"] <= 1
    assert (sweep_dir / "agreement_accuracy.png").is_file()
    assert "control test agreement" in (sweep_dir / "summary.md").read_text()
    if experiment == "closing_the_gap":
        assert (sweep_dir / "agreement_vs_cost.png").is_file()
        assert "## Recipes against plain distillation" in (sweep_dir / "summary.md").read_text()
    if experiment == "initialization":
        assert (sweep_dir / "fidelity_vs_lambda.png").is_file()
        assert all("start_train_agreement" in row["metrics"] for row in rows)
    if experiment == "loss_surface":
        (row,) = rows
        plane = row["loss_plane"]
        assert plane["point_loss"]["teacher"] < 1e-5 and len(plane["x"]) == 15
        assert (sweep_dir / "loss_plane.png").is_file()
    if experiment == "data_recycling":
        by_data = {row["settings"]["distill_data"]: row for row in rows}
        assert by_data["teacher"]["config"]["teacher_data_fraction"] == 0.5
        assert by_data["teacher"]["config"]["teachers_dir"] == by_data["all"]["config"][
            "teachers_dir"]
