"""Runs one of the study's experiments: a sweep of distillation runs over seeds.

    python -m launch.sweep --experiment=ensemble_size [--dry_run]

`--experiment=NAME` reads `launch/experiments/NAME.cfg`, a flagfile of
launch.distill flags (the base run) and of `--grid` and `--seeds`; flags
given on the command line override it. Each `--grid` is a product of
settings, `name=v1,v2;other=v3,v4`; several `--grid`s are joined. Every grid
point runs once per seed, in process, writing its run folder (report,
student) under `<experiments_dir>/<experiment>/runs/<run id>`, and the
sweep writes `results.csv`, `results.json`, `summary.md` and PNG plots
beside them. A rerun skips finished runs and resumes the one a kill
interrupted. `--dry_run` prints the runs, one line each, as the
launch.distill command that does the same run.
"""

import os
import shlex
import sys

from absl import app
from absl import flags

from keras_kd import data as data_lib
from keras_kd import experiments
from keras_kd import pipeline
from keras_kd.gan import job as gan_job

from launch import common_flags
from launch import distill

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
flags.DEFINE_bool("dry_run", False, "Print the runs, one line each, and stop.")
flags.DEFINE_string(
    "experiments_dir", None,
    "Root of sweep folders (default <saved_models_dir>/experiments).",
)
flags.DEFINE_bool("plots", True, "Draw the PNG plots once every run is finished.")

FLAGS = flags.FLAGS

RUNTIME_FLAGS = (
    "strategy", "cpu_replicas", "precision", "jit_compile", "deterministic", "backup_dir",
)


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


def parse_grid(text):
    """`'name=v1,v2;other=v3'` as `{name: [(text, value), ...]}`, values parsed by the flags."""
    grid = {}
    for axis in filter(None, (part.strip() for part in text.split(";"))):
        name, equals, values = axis.partition("=")
        name = name.strip()
        if not equals or not values.strip():
            raise app.UsageError(
                f"--grid={text!r}: expected 'name=v1,v2;other=v3'; got the axis {axis!r}."
            )
        if name not in distill.CONFIG_FLAGS or name in ("seed", "output_dir"):
            raise app.UsageError(
                f"--grid={text!r}: {name!r} is not a setting a sweep can vary; expected "
                f"one of launch.distill's flags: {sorted(set(distill.CONFIG_FLAGS) - {'seed', 'output_dir'})}."
            )
        parsed = []
        for value in values.split(","):
            value = value.strip()
            try:
                parsed.append((value, FLAGS[name].parser.parse(value)))
            except (ValueError, TypeError) as error:
                raise app.UsageError(f"--grid={text!r}: bad value {value!r} of {name}: {error}")
        grid[name] = parsed
    return grid


def planned_runs(experiment, output_dir):
    """The sweep's `Run`s, each with the command line that does the same run."""
    grids = [parse_grid(text) for text in FLAGS.grid]
    try:
        seeds = [int(seed) for seed in FLAGS.seeds]
    except ValueError:
        raise app.UsageError(f"--seeds must be integers; got {FLAGS.seeds}.")
    texts = {}
    for grid in grids:
        for name, pairs in grid.items():
            texts.update({(name, value): text for text, value in pairs})
    points = experiments.expand_grids(
        [{name: [value for _, value in pairs] for name, pairs in grid.items()} for grid in grids],
        seeds,
    )
    base_args = [
        (name, FLAGS[name].serialize()) for name in (*distill.CONFIG_FLAGS, *RUNTIME_FLAGS)
        if FLAGS[name].present and name not in ("seed", "output_dir")
    ]
    runs, commands = [], []
    for settings in points:
        run_id = experiments.run_id(settings)
        run_dir = os.path.join(output_dir, "runs", run_id)
        overrides = {**settings, "output_dir": run_dir}
        try:
            config = distill.config_from_flags(overrides)
            config.validate()
        except ValueError as error:
            raise app.UsageError(f"Run {run_id} of {experiment}: {error}")
        runs.append(experiments.Run(run_id, settings, config))
        swept = [
            f"--{name}={texts.get((name, value), value)}"
            for name, value in settings.items() if name != "seed"
        ]
        kept = [arg for name, arg in base_args if name not in settings]
        args = [*kept, *swept, f"--seed={settings['seed']}", f"--output_dir={run_dir}"]
        commands.append("python -m launch.distill " + " ".join(shlex.quote(a) for a in args))
    return runs, commands


def ensure_generators(runs, verbose):
    """Trains the GAN that runs with a `gan` policy sample, where there is none yet."""
    needed = {}
    for run in runs:
        config = run.config
        if config.policy_for(config.dataset).uses_synthetic and config.generator is None:
            needed.setdefault((config.dataset, config.data_dir, config.saved_models_dir), config)
    for (dataset, data_dir, saved_models_dir), config in needed.items():
        gan_config = gan_job.GANConfig(
            dataset=dataset, data_dir=data_dir, saved_models_dir=saved_models_dir,
            runtime=config.runtime,
        )
        slug = data_lib.load(dataset, data_dir=data_dir).info.slug
        if not os.path.exists(config.resolved_generator(slug)):
            print(f"Training the GAN the gan policy samples ({dataset}); see launch.train_gan.")
            common_flags.run_or_exit(gan_job.run, gan_config, verbose=verbose)


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
    common_flags.configure_logging()
    name = FLAGS.experiment or "sweep"
    root = FLAGS.experiments_dir or os.path.join(FLAGS.saved_models_dir, "experiments")
    output_dir = os.path.join(root, name)
    runs, commands = planned_runs(name, output_dir)
    if FLAGS.dry_run:
        for run, command in zip(runs, commands):
            done = os.path.exists(experiments.sweep.result_path(output_dir, run))
            print(f"{run.run_id}\t{'done' if done else 'todo'}\t{command}")
        return
    ensure_generators(runs, common_flags.verbosity())
    description = f"# Experiment `{name}`\n\n{experiment_description(name)}"
    try:
        rows = common_flags.run_or_exit(
            experiments.run_sweep, runs, output_dir,
            lambda config: pipeline.run(config, verbose=common_flags.verbosity()),
            experiment=name, description=description, plot=FLAGS.plots,
        )
    except pipeline.ConfigError as error:
        raise app.UsageError(str(error))
    print()
    print(experiments.summary_markdown(rows))
    print(f"results: {output_dir}/results.csv, results.json, summary.md")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
