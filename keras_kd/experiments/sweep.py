"""Grids of runs, and a sweep that resumes where it stopped."""

import dataclasses
import gc
import itertools
import json
import os
import re
import time
from typing import Any

import keras

from keras_kd import config as config_lib
from keras_kd import export
from keras_kd.experiments import plots
from keras_kd.experiments import results as results_lib


SCALES = ("study", "smoke")
# Smoke scale: the first and the last point of each grid, one seed, every
# model trained one epoch, so an experiment's code paths run in about a minute.
SMOKE_SETTINGS = {"epochs": 1, "teacher_epochs": 1}


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep.

    Attributes:
        run_id: a name unique in the sweep; its folder is `runs/<run_id>`.
        settings: the swept settings of this run, the seed included
            (`{"members": 3, "seed": 1}`); runs that differ only in `seed`
            form one configuration of the summary.
        config: what the sweep's job takes (a `keras_kd.jobs.DistillConfig`).
    """

    run_id: str
    settings: dict
    config: Any


def expand_grids(grids, seeds):
    """The settings of every run: each grid's product, joined, times the seeds.

    Args:
        grids: a list of grids, each a dict from a setting's name to its list
            of values (`{"temperature": [1, 4], "alpha": [0, 0.5]}`); an
            empty list means one run of the base settings.
        seeds: the seeds every grid point runs with.

    Returns:
        A list of dicts, seed last, without duplicates, in grid order.

    Example:

    >>> expand_grids([{"members": [1, 3]}, {"members": [3, 5]}], seeds=[0])
    [{'members': 1, 'seed': 0}, {'members': 3, 'seed': 0}, {'members': 5, 'seed': 0}]
    """
    if not seeds:
        raise ValueError("A sweep needs at least one seed.")
    points = []
    for grid in grids or [{}]:
        for name, values in grid.items():
            if not values:
                raise ValueError(f"The grid of {name!r} has no values.")
        names = list(grid)
        for values in itertools.product(*(grid[name] for name in names)):
            point = dict(zip(names, values))
            if point not in points:
                points.append(point)
    return [{**point, "seed": seed} for point in points for seed in seeds]


def run_id(settings):
    """A readable, filesystem-safe name for a run's settings.

    Example:

    >>> run_id({"student_init": "interpolate:0.5", "seed": 2})
    'student_init=interpolate-0.5,seed=2'
    """
    parts = [f"{name}={_format(value)}" for name, value in settings.items()]
    return re.sub(r"[^A-Za-z0-9.+_=,-]", "-", ",".join(parts)) or "base"


def _format(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid_runs(base, grids, seeds, output_dir, scale="study"):
    """A sweep of `base` over grids of settings and seeds.

    Args:
        base: a job config (a `keras_kd.jobs.DistillConfig`, say).
        grids: as `expand_grids` takes them, keyed by the config's flag names
            (`[{"temperature": [1.0, 4.0]}]`).
        seeds: the seeds every grid point runs with.
        output_dir: the sweep's folder; run `r` writes to `runs/<run id>`.
        scale: `"study"` (as given) or `"smoke"`: the first and last point
            of each grid, the first seed only, and `SMOKE_SETTINGS` over every
            run's settings.

    Returns:
        A list of `Run`s, each config `base` with its settings applied and
        validated (a ValueError names the run and the bad setting).

    Example:

    >>> runs = grid_runs(keras_kd.jobs.DistillConfig(), [{"temperature": [1.0, 4.0]}],
    ...                  seeds=[0], output_dir="sweep")
    >>> [(run.run_id, run.config.distillation.temperature) for run in runs]
    [('temperature=1,seed=0', 1.0), ('temperature=4,seed=0', 4.0)]
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}; got {scale!r}.")
    smoke, points = {}, expand_grids(grids, seeds)
    if scale == "smoke":
        names = config_lib.flag_paths(type(base))
        smoke = {name: value for name, value in SMOKE_SETTINGS.items() if name in names}
        points = []
        for grid in grids or [{}]:
            grid_points = expand_grids([grid], seeds[:1])
            for point in (grid_points[0], grid_points[-1]):
                if point not in points:
                    points.append(point)
    runs = []
    for settings in points:
        name = run_id(settings)
        overrides = {**settings, **smoke, "output_dir": os.path.join(output_dir, "runs", name)}
        try:
            config = config_lib.override(base, overrides)
        except ValueError as error:
            raise ValueError(f"Run {name}: {error}") from None
        runs.append(Run(name, settings, config))
    return runs


def config_runs(configs, output_dir):
    """A sweep of the given configs, each run named by the settings that vary.

    Args:
        configs: job configs of one class; no two alike.
        output_dir: the sweep's folder; each run writes to `runs/<run id>`.

    Example:

    >>> base = keras_kd.jobs.DistillConfig()
    >>> configs = [keras_kd.config.override(base, {"alpha": a}) for a in (0.0, 0.5)]
    >>> [run.run_id for run in config_runs(configs, "sweep")]
    ['alpha=0', 'alpha=0.5']
    """
    flats = [config_lib.flat(config) for config in configs]
    varied = [
        name for name in flats[0]
        if name != "output_dir" and len({repr(values[name]) for values in flats}) > 1
    ]
    varied.sort(key=lambda name: name == "seed")  # the seed last, as in grids
    runs = []
    for config, values in zip(configs, flats):
        settings = {name: values[name] for name in varied}
        name = run_id(settings)
        config = config_lib.override(
            config, {"output_dir": os.path.join(output_dir, "runs", name)}
        )
        runs.append(Run(name, settings, config))
    return runs


def result_path(output_dir, run):
    """Where a finished run's result row is kept."""
    return os.path.join(output_dir, "runs", run.run_id, "result.json")


def shard(runs, index, count):
    """The share of `runs` that shard `index` of `count` runs: every `count`-th
    run from the `index`-th, so the shards of one run list are disjoint and
    cover it (a cluster's array job gives each host its index).

    >>> [run.run_id for run in shard([Run(str(k), {}, None) for k in range(5)], 1, 2)]
    ['1', '3']
    """
    if not (isinstance(count, int) and count >= 1 and isinstance(index, int)
            and 0 <= index < count):
        raise ValueError(f"A shard is index/count with 0 <= index < count; got {index}/{count}.")
    return runs[index::count]


def finished_rows(runs, output_dir):
    """`(rows, missing)`: the result rows of the finished runs, in `runs` order,
    and the run ids with no result yet (to merge the shards of a sweep)."""
    rows, missing = [], []
    for run in runs:
        path = result_path(output_dir, run)
        if not os.path.exists(path):
            missing.append(run.run_id)
            continue
        with open(path) as f:
            rows.append(json.load(f))
    return rows, missing


def run_sweep(runs, output_dir, job, experiment="", description="", log=print, plot=True,
              tables=True):
    """Runs each unfinished run with `job`, then writes the sweep's results.

    A run is finished once `runs/<run_id>/result.json` exists; it is written
    whole, after the job returns, so a killed sweep reruns at most the run
    in progress (and `keras_kd.jobs.distill.run` resumes that one from its
    backups). After every run the tables are rewritten, so they always hold
    what is finished; the plots are drawn once all runs are.

    Args:
        runs: `Run`s with unique `run_id`s.
        output_dir: the sweep's folder.
        job: called as `job(run.config)`; returns a report like
            `keras_kd.jobs.distill.run`'s.
        experiment: the sweep's name, recorded in each row.
        description: Markdown put at the top of `summary.md`.
        log: called with a line of progress per run.
        plot: whether to draw the PNG plots.
        tables: whether to write the tables (off for one shard of a sweep,
            whose tables are written when the shards are merged).

    Returns:
        The result rows, in `runs` order.
    """
    ids = [run.run_id for run in runs]
    if len(set(ids)) != len(ids):
        duplicated = sorted({name for name in ids if ids.count(name) > 1})
        raise ValueError(f"Run ids must be unique; repeated: {duplicated}.")
    rows = []
    for index, run in enumerate(runs):
        path = result_path(output_dir, run)
        prefix = f"[{index + 1}/{len(runs)}] {run.run_id}"
        if os.path.exists(path):
            with open(path) as f:
                rows.append(json.load(f))
            log(f"{prefix}: finished earlier, skipped")
            continue
        started = time.perf_counter()
        report = job(run.config)
        seconds = time.perf_counter() - started
        row = results_lib.result_row(experiment, run.run_id, run.settings, report, seconds)
        export.write_json(row, path)
        rows.append(row)
        if tables:
            results_lib.write_results(rows, output_dir, description)
        log(f"{prefix}: {seconds:.0f} s, " + results_lib.headline(row))
        # Each run builds fresh models; drop the last run's graphs and names.
        keras.backend.clear_session()
        gc.collect()
    if tables:
        results_lib.write_results(rows, output_dir, description)
    if plot:
        plots.write_plots(rows, output_dir)
    return rows
