"""Runs one of the study's experiments: a sweep of distillation runs over seeds.

    python -m launch.sweep --experiment=ensemble_size [--dry_run]

`--experiment=NAME` reads `launch/experiments/NAME.cfg`, a flagfile of
launch.distill flags (the base run) and of `--grid` and `--seeds`; flags
given on the command line override it. Each `--grid` is a product of
settings, `name=v1,v2;other=v3,v4`; several `--grid`s are joined. Every grid
point runs once per seed, `--workers` runs at once (this process and spawned
ones; results identical to one at a time), writing its run folder (report,
student) under `<experiments_dir>/<experiment>/runs/<run id>`, and the
sweep writes `results.csv`, `results.json`, `summary.md` and PNG plots
beside them. A rerun skips finished runs and resumes the one a kill
interrupted; a run whose settings, data or code changed since its result was
written runs again. With `--reuse` (the default) a run identical to one any
sweep under `--experiments_dir` finished takes that result instead of
training again. `--dry_run` prints the runs, one line each, as the
launch.distill command that does the same run. `--scale=smoke` runs the
same grid with one seed and every model trained for one epoch (about a
minute; what the tests run), into `<experiment>-smoke`.

To split a sweep across hosts (a cluster's array job), run
`--shard=i/N` on host i of N (i from 0): each runs every N-th run into the
shared experiment folder, without the tables; then `--merge` on any host
writes the tables and plots of all the runs once every shard is done. With
Slurm, one shard per array task:

    sbatch --array=0-7 --wrap='python -m launch.sweep --experiment=NAME \
        --saved_models_dir=/shared/saved_models --shard=$SLURM_ARRAY_TASK_ID/8'
    sbatch --dependency=afterok:<array job id> --wrap='python -m launch.sweep \
        --experiment=NAME --saved_models_dir=/shared/saved_models --merge'
"""

import functools
import os
import shlex
import sys

from absl import app
from absl import flags

from keras_kd import config as config_lib
from keras_kd import data as data_lib
from keras_kd import distribute
from keras_kd import experiments
from keras_kd import jobs

from launch import config_flags

EXPERIMENTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments")

flags.DEFINE_string(
    "experiment", None,
    "Experiment to run: reads launch/experiments/<NAME>.cfg before the other flags.",
)
flags.DEFINE_multi_string(
    "grid", [],
    "A grid of launch.distill settings, 'name=v1,v2;other=v3'; repeat to join grids.",
)
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds every grid point runs with.")
flags.DEFINE_multi_string(
    "paper", [],
    "A number the paper states, put beside ours in summary.md: 'settings | metric=value | "
    "where', e.g. 'policy=crop_flip;temperature=4 | test_agreement=0.845 | section 5.1'; "
    "settings as in --grid with one value each (none: every configuration), values like "
    "0.845, 0.772+-0.004 (with its spread), <0.8 or ~0.95; repeat for more.",
)
flags.DEFINE_bool("dry_run", False, "Print the runs, one line each, and stop.")
flags.DEFINE_enum(
    "scale", "study", list(experiments.SCALES),
    "study: the experiment as its flagfile sets it. smoke: the same grid, one seed, "
    "every model trained 1 epoch (a GAN 1 epoch, rated on 64 samples), into "
    "<experiment>-smoke; for tests.",
)
flags.DEFINE_integer(
    "gan_epochs", None, "Epochs of the GAN a gan policy needs, when there is none yet "
    "(default: launch.train_gan's).", lower_bound=1,
)
flags.DEFINE_string(
    "experiments_dir", None,
    "Root of sweep folders (default <saved_models_dir>/experiments).",
)
flags.DEFINE_bool("plots", True, "Draw the PNG plots once every run is finished.")
flags.DEFINE_string(
    "shard", None,
    "Run only this host's share, 'i/N' (0 <= i < N): every N-th run from the i-th; no "
    "tables are written until --merge.",
)
flags.DEFINE_bool(
    "reuse", True, "Reuse a finished run's result, from this or any sweep under "
    "--experiments_dir, for a run that computes the same thing (the same settings, data, "
    "GAN and keras_kd version) instead of training it again.",
)
flags.DEFINE_string(
    "workers", "auto",
    "Runs done at once, each in its own process: a number, or auto (2 on a machine without "
    "GPUs and with 2 or more cores, where 2 ran a sweep 1.4x faster than 1; else 1). Results "
    "are identical whatever the number.",
)
flags.DEFINE_bool(
    "merge", False, "Write the tables and plots of every run from the run folders (after "
    "the shards are done); runs nothing.",
)

FLAGS = flags.FLAGS

# Under --experiments_dir: every finished run's result, by its content key.
REUSE_FOLDER = "results_by_key"

config_flags.define_config_flags(jobs.DistillConfig)

# What a grid may not vary: each run has its own seed (--seeds) and folder.
_FIXED = ("seed", "output_dir")
# What chooses the folders a sweep writes (it sets each run's --output_dir itself).
_FOLDER_FLAGS = "--experiments_dir, --saved_models_dir"


def _start_order(config):
    """What runs start first: the longest, and among equal ones the highest
    seed, since with `--reference` a run's student is the previous seed's
    reference: that run then waits for it rather than distilling it again."""
    return config.training_epochs(), config.training.seed


def available_experiments():
    """The names of the flagfiles in launch/experiments."""
    return sorted(
        name[: -len(".cfg")] for name in os.listdir(EXPERIMENTS_DIR) if name.endswith(".cfg")
    )


def parse_flags(argv):
    """absl's parsing, with `--experiment=NAME`'s flagfile read before the rest."""
    name = _experiment_argument(argv[1:])
    if name is not None:
        path = os.path.join(EXPERIMENTS_DIR, f"{name}.cfg")
        if not os.path.isfile(path):
            sys.exit(
                f"FATAL Flags parsing error: unknown experiment {name!r}; expected one "
                f"of {available_experiments()} (files in {EXPERIMENTS_DIR})."
            )
        argv = [argv[0], f"--flagfile={path}", *argv[1:]]
    try:
        return FLAGS(argv)
    except flags.Error as error:
        sys.exit(f"FATAL Flags parsing error: {error}\nPass --helpshort or --helpfull.")


def _experiment_argument(args):
    for index, arg in enumerate(args):
        if arg.startswith("--experiment="):
            return arg.partition("=")[2]
        if arg == "--experiment" and index + 1 < len(args):
            return args[index + 1]
    return None


def parse_grid(text, flag="--grid"):
    """`'name=v1,v2;other=v3'` as `{name: [value, ...]}`, each value checked."""
    settings = sorted(set(config_lib.flag_paths(jobs.DistillConfig)) - set(_FIXED))
    grid = {}
    for axis in filter(None, (part.strip() for part in text.split(";"))):
        name, equals, values = axis.partition("=")
        name = name.strip()
        if not equals or not values.strip():
            raise app.UsageError(
                f"{flag}={text!r}: expected 'name=v1,v2;other=v3'; got the axis {axis!r}."
            )
        if name not in settings:
            raise app.UsageError(
                f"{flag}={text!r}: {name!r} is not a setting a sweep can vary; expected "
                f"one of launch.distill's flags: {settings}."
            )
        grid[name] = []
        for value in values.split(","):
            try:
                grid[name].append(config_lib.parse_value(jobs.DistillConfig, name, value))
            except ValueError as error:
                raise app.UsageError(
                    f"{flag}={text!r}: bad value {value.strip()!r} of {name}: {error}"
                )
    return grid


def parse_paper(text):
    """`--paper='settings | metric=value[,metric=value] | where'` as `PaperNumber`s."""
    parts = [part.strip() for part in text.split("|")]
    if len(parts) != 3:
        raise app.UsageError(
            f"--paper={text!r}: expected 'settings | metric=value | where', e.g. "
            "'temperature=4 | test_agreement=0.845 | section 5.1'.")
    settings_text, stated, source = parts
    settings = {}
    for name, values in parse_grid(settings_text, flag="--paper").items():
        if len(values) != 1:
            raise app.UsageError(
                f"--paper={text!r}: {name} has {len(values)} values; a stated number is "
                "for settings of one value each (repeat --paper for another).")
        settings[name] = values[0]
    try:
        return [
            experiments.PaperNumber(settings, metric, value, spread, relation, source)
            for metric, relation, value, spread in experiments.paper.parse_stated(stated)
        ]
    except ValueError as error:
        raise app.UsageError(f"--paper={text!r}: {error}") from None


def paper_numbers():
    """The `--paper` numbers, each checked to sit beside a configuration of the
    sweep's grids at study scale and to be of a metric of the summary table."""
    metrics = [name for name, _ in experiments.results.SUMMARY_COLUMNS]
    points = experiments.expand_grids([parse_grid(text) for text in FLAGS.grid], seeds=[0])
    numbers = []
    for text in FLAGS.paper:
        for number in parse_paper(text):
            if number.metric not in metrics:
                raise app.UsageError(
                    f"--paper={text!r}: {number.metric!r} is not a metric of the summary "
                    f"table; expected one of {metrics}.")
            if experiments.paper.unmatched([number], points):
                swept = sorted({name for point in points for name in point} - {"seed"})
                raise app.UsageError(
                    f"--paper={text!r}: no configuration of the sweep has the settings "
                    f"{number.settings}; its grids vary {swept}.")
            numbers.append(number)
    return numbers


def planned_runs(output_dir):
    """The sweep's `Run`s, from the base config the flags make and the grids."""
    if FLAGS["output_dir"].present:
        raise app.UsageError(
            "--output_dir is set by the sweep for each run (<experiments_dir>/<experiment>/"
            "runs/<run id>); choose the sweep's folder with --experiments_dir.")
    if FLAGS["seed"].present:
        raise app.UsageError("--seed is set by the sweep for each run; pass --seeds=0,1,2.")
    base = config_flags.config_from_flags(jobs.DistillConfig)
    grids = [parse_grid(text) for text in FLAGS.grid]
    try:
        seeds = [int(seed) for seed in FLAGS.seeds]
    except ValueError:
        raise app.UsageError(f"--seeds must be integers; got {','.join(FLAGS.seeds)}.")
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise app.UsageError(
            f"--seeds={','.join(FLAGS.seeds)} repeats {repeated}; each seed runs once.")
    try:
        return experiments.grid_runs(base, grids, seeds, output_dir, scale=FLAGS.scale)
    except ValueError as error:
        raise app.UsageError(f"{FLAGS.experiment or 'sweep'}: {error}")


def parse_shard(text):
    """`'i/N'` as `(i, N)`, or a usage error naming the value."""
    index, slash, count = (text or "").partition("/")
    try:
        index, count = int(index), int(count)
        if not slash:
            raise ValueError
        experiments.shard([], index, count)  # checks the bounds
        return index, count
    except ValueError:
        raise app.UsageError(
            f"--shard={text!r}: expected 'i/N' with 0 <= i < N, e.g. --shard=0/4."
        ) from None


def parse_workers(text):
    """`--workers`: a positive number, or `auto` (`experiments.auto_workers()`)."""
    if text == "auto":
        return experiments.auto_workers()
    try:
        workers = int(text)
        if workers < 1:
            raise ValueError
    except ValueError:
        raise app.UsageError(
            f"--workers={text!r}: expected a positive number of processes or 'auto'.") from None
    return workers


def one_at_a_time_if_distributed(runs, workers):
    """`workers`, or 1 where a run uses a distribution strategy: its devices
    or hosts are the run's, so runs take them in turn (`--workers=N` asked
    for more is a usage error)."""
    strategies = sorted({run.config.runtime.strategy for run in runs} - {"default"})
    if not strategies or workers == 1:
        return workers
    if FLAGS.workers != "auto":
        raise app.UsageError(
            f"--workers={FLAGS.workers}: runs under the {strategies[0]!r} strategy span its "
            "devices or hosts, so they run one at a time; use --workers=1 (or auto).")
    return 1


def command(run):
    """The launch.distill command that does the same run: the base settings,
    then the swept ones, then the seed and the folder."""
    last = ("seed", "output_dir")
    args = [
        arg for arg in config_lib.command_line(run.config)
        if _flag_of(arg) not in last
    ]
    swept = [arg for arg in args if _flag_of(arg) in run.settings]
    args = [arg for arg in args if arg not in swept] + swept
    args += [f"--seed={run.config.training.seed}", f"--output_dir={run.config.output.directory}"]
    return "python -m launch.distill " + " ".join(shlex.quote(arg) for arg in args)


def start_strategies(runs):
    """Makes the distribution strategy of each run that has one, before any
    other TensorFlow work (a run's key reads its data's digest, the GAN job
    loads the data): TensorFlow takes no logical CPU devices
    (`--cpu_replicas`) nor a multi-worker cluster once it has started.
    Returns the multi-worker strategy among them, if any."""
    runtimes = {run.config.runtime for run in runs}
    strategies = [jobs.outline.start(runtime) for runtime in runtimes
                  if runtime.strategy != "default"]
    return next(filter(distribute.is_multi_worker, strategies), None)


def _flag_of(arg):
    name = arg[2:].partition("=")[0]
    return name[2:] if name.startswith("no") and "=" not in arg else name


def ensure_generators(runs, verbose, strategy=None):
    """Trains the GAN that runs with a `gan` policy sample, where there is none
    yet (on every worker of a multi-worker `strategy` unless all find it)."""
    for run in runs:
        config = run.config
        if "gan" not in config.distillation_set.resolve(config.data.dataset).stages:
            continue
        slug = data_lib.load(config.data.dataset, data_dir=config.data.data_dir).info.slug
        found = os.path.exists(jobs.folders.path(config, slug, "generator"))
        if distribute.all_workers_agree([found], strategy)[0]:
            continue
        print(f"Training the GAN the gan policy samples ({config.data.dataset}); "
              "see launch.train_gan.")
        gan_config = jobs.GANConfig(
            data=config.data, output=jobs.Output(saved_models_dir=config.output.saved_models_dir),
            runtime=config.runtime, teacher=config.teacher, training=config.training,
        )
        if FLAGS.scale == "smoke":
            gan_config = config_lib.override(gan_config, experiments.sweep.SMOKE_GAN_SETTINGS)
        elif FLAGS.gan_epochs:
            gan_config = config_lib.override(gan_config, {"epochs": FLAGS.gan_epochs})
        config_flags.run_or_exit(jobs.gan.run, gan_config, verbose=verbose,
                                 folder_flags=_FOLDER_FLAGS)


def run_status(run, output_dir, reuse_dir):
    """`done`, `reuse` (an identical run's result is kept) or `todo`."""
    path = experiments.sweep.result_path(output_dir, run)
    if not os.path.exists(path) and not (reuse_dir and os.path.isdir(reuse_dir)):
        return "todo"  # without loading the data (a key needs its digest)
    key = jobs.distill.result_key(run.config)
    if experiments.sweep.stored_row(path, key)[0]:
        return "done"
    if reuse_dir and experiments.sweep.stored_row(
            experiments.sweep.reuse_path(reuse_dir, key), key)[0]:
        return "reuse"
    return "todo"


def experiment_description(name):
    """The comment lines at the top of the experiment's flagfile, as Markdown."""
    path = os.path.join(EXPERIMENTS_DIR, f"{name}.cfg")
    if not os.path.isfile(path):
        return ""
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line[1:].strip())
    return "\n".join(lines).strip()


def main(argv):
    del argv
    config_flags.configure_logging()
    workers = parse_workers(FLAGS.workers)
    name = FLAGS.experiment or "sweep"
    root = FLAGS.experiments_dir or os.path.join(FLAGS.saved_models_dir, "experiments")
    output_dir = os.path.join(root, name if FLAGS.scale == "study" else f"{name}-{FLAGS.scale}")
    runs = planned_runs(output_dir)
    numbers = paper_numbers()
    workers = one_at_a_time_if_distributed(runs, workers)
    reuse_dir = os.path.join(root, REUSE_FOLDER) if FLAGS.reuse else None
    description = f"# Experiment `{name}`\n\n{experiment_description(name)}"
    if FLAGS.merge:
        return merge(runs, output_dir, description, numbers)
    if FLAGS.shard:
        index, count = parse_shard(FLAGS.shard)
        runs = experiments.shard(runs, index, count)
    if FLAGS.dry_run:
        for run in runs:
            print(f"{run.run_id}\t{run_status(run, output_dir, reuse_dir)}\t{command(run)}")
        return
    if workers > 1:
        experiments.share_cores(workers)  # this process does runs too
    multi_worker = config_flags.run_or_exit(start_strategies, runs)
    ensure_generators(runs, config_flags.verbosity(), multi_worker)
    verbose = config_flags.verbosity()
    if workers > 1 and verbose == "auto":
        verbose = 0  # progress bars of several processes would interleave
    rows = config_flags.run_or_exit(
        experiments.run_sweep, runs, output_dir,
        functools.partial(jobs.distill.run, verbose=verbose),
        workers=workers, experiment=name, description=description, plot=FLAGS.plots and not FLAGS.shard,
        tables=not FLAGS.shard, key=jobs.distill.result_key, reuse_dir=reuse_dir,
        cost=_start_order, paper_numbers=numbers, strategy=multi_worker,
        folder_flags=_FOLDER_FLAGS,
    )
    if FLAGS.shard:
        print(f"shard {FLAGS.shard}: {len(rows)} runs finished in {output_dir}/runs; once "
              "every shard is done, write the tables with --merge.")
        return
    print()
    print(experiments.summary_markdown(rows))
    print(experiments.paper_markdown(rows, numbers), end="")
    print(f"results: {output_dir}/results.csv, results.json, summary.md")


def merge(runs, output_dir, description, numbers=()):
    """Writes the tables and plots of all `runs` from their run folders."""
    rows, missing = experiments.finished_rows(runs, output_dir, key=jobs.distill.result_key)
    if missing:
        raise app.UsageError(
            f"--merge: {len(missing)} of {len(runs)} runs have no result in {output_dir}/runs "
            f"yet: {missing}. Run the shards that hold them first."
        )
    experiments.write_results(rows, output_dir, description, numbers)
    if FLAGS.plots:
        experiments.write_plots(rows, output_dir)
    print(experiments.summary_markdown(rows))
    print(experiments.paper_markdown(rows, numbers), end="")
    print(f"results: {output_dir}/results.csv, results.json, summary.md")


if __name__ == "__main__":
    config_flags.run(main, flags_parser=parse_flags)
