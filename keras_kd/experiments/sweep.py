"""Grids of runs, and a sweep that resumes where it stopped."""

import collections
import concurrent.futures
import dataclasses
import itertools
import json
import multiprocessing
import os
import re
import threading
import time
from typing import Any

import tensorflow as tf

from keras_kd import config as config_lib
from keras_kd import distribute
from keras_kd import export
from keras_kd import processes
from keras_kd import trace_cache
from keras_kd.experiments import plots
from keras_kd.experiments import results as results_lib


SCALES = ("study", "smoke")
# Smoke scale: the first and the last point of each grid, one seed, every
# model trained one epoch, so an experiment's code paths run in about a minute.
SMOKE_SETTINGS = {"epochs": 1, "teacher_epochs": 1}
# The GAN a smoke sweep trains where a `gan` policy needs one: one epoch, its samples rated on
# one batch (the default 1,000 samples through a 5-member ResNet-56 teacher take minutes).
SMOKE_GAN_SETTINGS = {"epochs": 1, "num_samples": 64}


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


def finished_rows(runs, output_dir, key=None):
    """`(rows, missing)`: the result rows of the finished runs, in `runs` order,
    and the run ids with no result to trust yet (to merge the shards of a
    sweep); `key` as `run_sweep` takes it."""
    rows, missing = [], []
    for run in runs:
        row, _ = stored_row(result_path(output_dir, run), key(run.config) if key else None)
        if row is None:
            missing.append(run.run_id)
        else:
            rows.append(row)
    return rows, missing


def stored_row(path, key=None):
    """`(row, problem)`: the result row kept at `path`, if it can be trusted.

    `row` is `None` when there is no file (`problem` is then `None` too), or
    when the file is unreadable, incomplete, edited or damaged (its digest,
    `keras_kd.experiments.results.row_problem`) or, given a `key`, was
    recorded under another key: `problem` then says which, so the run is done
    again instead of being trusted.
    """
    if not os.path.exists(path):
        return None, None
    try:
        with open(path) as f:
            row = json.load(f)
    except (OSError, ValueError) as error:
        return None, f"its result {path} is unreadable ({error})"
    problem = results_lib.row_problem(row)
    if problem:
        return None, f"its result {path} cannot be trusted: {problem}"
    if key is not None and row.get("key") != key:
        return None, (f"its result was computed from other settings, data or code "
                      f"(key {row.get('key')!r}, now {key!r})")
    return row, None


def reuse_path(reuse_dir, key):
    """Where a result is kept by its content key, for any sweep to reuse."""
    return os.path.join(reuse_dir, f"{key}.json")


def run_sweep(runs, output_dir, job, experiment="", description="", log=print, plot=True,
              tables=True, key=None, reuse_dir=None, workers=1, cost=None, paper_numbers=(),
              strategy=None):
    """Runs each unfinished run with `job`, then writes the sweep's results.

    A run is finished once `runs/<run_id>/result.json` exists; it is written
    whole, after the job returns, so a killed sweep reruns at most the runs
    in progress (and `keras_kd.jobs.distill.run` resumes those from their
    backups). After every run the tables are rewritten, so they always hold
    what is finished; the plots are drawn once all runs are.

    With a `key`, each row records its run's content key, and a kept result
    counts as finished only if its key is the run's: one computed before the
    run's settings, data or code changed, or an unreadable one, is run again.
    With a `reuse_dir` too, every result is also kept there by its key, and a
    run whose key is there takes that result (from this sweep or any other
    sharing the folder) instead of computing it again; its row says where
    the result was computed (`reused_from`, that run's folder).

    Runs are done in one process (`workers=1`), or by `workers` processes at
    once, each taking the next unfinished run; a run's result does not
    depend on which. Either way each process keeps the training steps it
    traced for the next run of the same shapes (`keras_kd.trace_cache`), so
    start-up and tracing are paid once per process, not once per run. Runs
    that share teacher members or a control wait for the one training them.

    Args:
        runs: `Run`s with unique `run_id`s.
        output_dir: the sweep's folder.
        job: called as `job(run.config)`; returns a report like
            `keras_kd.jobs.distill.run`'s. With several workers it must
            pickle (a module's function, or a `functools.partial` of one).
        experiment: the sweep's name, recorded in each row.
        description: Markdown put at the top of `summary.md`.
        log: called with a line of progress per run.
        plot: whether to draw the PNG plots.
        tables: whether to write the tables (off for one shard of a sweep,
            whose tables are written when the shards are merged).
        key: called as `key(run.config)`; a digest of everything the run's
            result depends on (`keras_kd.jobs.distill.result_key`).
        reuse_dir: a folder of results kept by key, shared across sweeps;
            needs `key`.
        workers: how many runs are done at once, each in its own process
            (this one among them).
        cost: called as `cost(run.config)`, any sortable value; the runs
            of the highest cost start first (longest first keeps several
            workers busy to the end), ties in `runs` order; the rows still
            come back in `runs` order. `None` keeps the
            order of `runs`.
        paper_numbers: `keras_kd.experiments.PaperNumber`s, the numbers a
            paper states for some of the sweep's configurations, put beside
            ours in `summary.md`.
        strategy: the multi-worker strategy the runs train under, if any.
            Every worker then runs this sweep with the same arguments: the
            workers decide together which runs are finished (a run one
            worker skips while another trains it would wait forever on a
            collective: a run counts as finished only where every worker
            finds its result), every worker takes part in every run, and only
            the chief writes the sweep's files.

    Returns:
        The result rows, in `runs` order.
    """
    ids = [run.run_id for run in runs]
    if len(set(ids)) != len(ids):
        duplicated = sorted({name for name in ids if ids.count(name) > 1})
        raise ValueError(f"Run ids must be unique; repeated: {duplicated}.")
    if reuse_dir is not None and key is None:
        raise ValueError("run_sweep: reuse_dir needs a key to find results by.")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}.")
    writes = distribute.is_chief(strategy)
    found = []  # per run: (prefix, key, its row kept or reused, whether reused, problem)
    for index, run in enumerate(runs):
        prefix = f"[{index + 1}/{len(runs)}] {run.run_id}"
        run_key = key(run.config) if key else None
        row, problem = stored_row(result_path(output_dir, run), run_key)
        reused = False
        if row is None and reuse_dir:
            row = _reused_row(reuse_dir, run_key, experiment, run)
            reused = row is not None
        found.append((prefix, run_key, row, reused, problem))
    agreed = distribute.all_workers_agree([row is not None for _, _, row, _, _ in found],
                                          strategy)
    rows, todo = {}, []
    for index, (run, (prefix, run_key, row, reused, problem), done) in enumerate(
            zip(runs, found, agreed)):
        if problem:
            log(f"{prefix}: {problem}; running it again")
        if not done:
            todo.append((index, prefix, run, run_key))
            continue
        if reused:
            if writes:
                export.write_json(row, result_path(output_dir, run))
            log(f"{prefix}: reused the identical run {row['reused_from']}")
        else:
            log(f"{prefix}: finished earlier, skipped")
        rows[index] = row

    def finished(index, prefix, run, run_key, report, seconds):
        row = results_lib.result_row(experiment, run.run_id, run.settings, report, seconds)
        if run_key is not None:
            row["key"] = run_key
        row = results_lib.sealed(row)
        if writes:
            export.write_json(row, result_path(output_dir, run))
            if reuse_dir:
                export.write_json(row, reuse_path(reuse_dir, run_key))
        log(f"{prefix}: {seconds:.0f} s, " + results_lib.headline(row))
        rows[index] = row
        if tables and writes:
            results_lib.write_results(_in_order(rows), output_dir, description, paper_numbers)

    if cost is not None:
        todo.sort(key=lambda item: cost(item[2].config), reverse=True)  # stable
    if workers == 1 or len(todo) <= 1:
        with trace_cache.TraceCache().activated():
            for index, prefix, run, run_key in todo:
                finished(index, prefix, run, run_key, *_timed_run(job, run.config))
    else:
        _run_in_workers(todo, job, min(workers, len(todo)), finished)
    rows = _in_order(rows)
    if tables and writes:
        results_lib.write_results(rows, output_dir, description, paper_numbers)
    if plot and writes:
        plots.write_plots(rows, output_dir)
    return rows


def auto_workers():
    """How many runs a sweep does at once by default: 2 on a machine without
    GPUs and with at least 2 cores, else 1.

    On the 2-core CPU box, a sweep of four study-shaped runs took 36.3 s
    with two workers against 50.5 s with one (`benchmarks.study_run`), and
    the `self_distillation` experiment was slower with three. Each keeps
    TensorFlow's intra-op threads (their count changes how oneDNN splits a
    sum, so the numbers) and takes its share of the inter-op threads
    (`share_cores`). One GPU is shared badly by several processes, so with
    GPUs a sweep runs one at a time.
    """
    if tf.config.list_physical_devices("GPU") or (os.cpu_count() or 1) < 2:
        return 1
    return 2


def share_cores(workers):
    """Gives this process its share of the machine's cores for TensorFlow's
    inter-op threads (the cores divided by `workers`, at least 1), as each
    of a sweep's `workers` processes does; the intra-op threads, which
    decide how an op's sums are split and so its last bits, stay as they
    are. Two processes of the study's runs on 2 cores ran about 8% faster
    so, with identical results.

    Returns whether it was set: not once TensorFlow's runtime has started
    in this process (then nothing changes).
    """
    threads = max(1, (os.cpu_count() or 1) // workers)
    try:
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        return False
    return True


def _in_order(rows):
    return [rows[index] for index in sorted(rows)]


def _timed_run(job, config):
    """`(report, seconds)` of one run. The process's Keras state is kept for
    the next run (`keras.backend.clear_session()` would drop the kernels of
    the steps the trace cache keeps)."""
    started = time.perf_counter()
    report = job(config)
    return report, time.perf_counter() - started


def _run_in_workers(todo, job, workers, finished):
    """Runs `todo` in this process and in `workers - 1` others, each taking
    the next run when it is free; `finished` is called, one at a time, as
    each run ends."""
    queue = collections.deque(todo)
    lock = threading.Lock()  # over `queue`, `failures` and `finished`
    failures = []

    def next_run():
        with lock:
            return queue.popleft() if queue and not failures else None

    def finish(item, result):
        with lock:
            finished(*item, *result)

    # Spawned, not forked: TensorFlow's runtime does not survive a fork.
    pool = concurrent.futures.ProcessPoolExecutor(
        workers - 1, mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker, initargs=(os.getpid(), workers))
    feeder = threading.Thread(target=_feed_pool, daemon=True,
                              args=(pool, job, workers - 1, next_run, finish, failures))
    feeder.start()
    try:
        # This process is already started: it does runs too, while the others start.
        with trace_cache.TraceCache().activated():
            while (item := next_run()) is not None:
                finish(item, _timed_run(job, item[2].config))
        feeder.join()
    except BaseException:
        with lock:
            queue.clear()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    if failures:
        raise failures[0]


def _feed_pool(pool, job, slots, next_run, finish, failures):
    """Keeps `slots` runs in `pool`, until `next_run()` has no more."""
    running = {}
    while True:
        while len(running) < slots and (item := next_run()) is not None:
            running[pool.submit(_worker_run, job, item[2].config)] = item
        if not running:
            return
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
            item = running.pop(future)
            try:
                finish(item, future.result())
            except BaseException as error:  # the sweep raises it once the others end
                failures.append(error)


_WORKER_CACHE = None


def _start_worker(parent_pid, workers):
    """A sweep worker's start: it ends with the sweep's process, takes its
    share of the cores, and keeps its traced steps for all the runs it does."""
    global _WORKER_CACHE
    processes.end_with_parent(parent_pid)
    share_cores(workers)
    _WORKER_CACHE = trace_cache.TraceCache()


def _worker_run(job, config):
    with _WORKER_CACHE.activated():
        return _timed_run(job, config)


def _reused_row(reuse_dir, key, experiment, run):
    """The row kept under `key` in `reuse_dir`, renamed for `run`, or None."""
    row, _ = stored_row(reuse_path(reuse_dir, key), key)
    if row is None:
        return None
    return results_lib.sealed({
        **row, "experiment": experiment, "run_id": run.run_id, "settings": dict(run.settings),
        "reused_from": row.get("reused_from") or row["config"].get("output_dir"),
    })
