"""Sweeps of distillation runs, and their results as tables and plots.

A sweep is a list of `Run`s, usually `grid_runs` of a base configuration over
grids of settings and seeds; `run_sweep` runs those not finished yet and
writes `results.csv`, `results.json`, `summary.md` (means ± standard
deviations over seeds, beside the numbers a paper states where given as
`PaperNumber`s) and PNG plots. `shard` splits the runs across hosts
and `finished_rows` gathers them back; `run_sweep(workers=N)` runs N at once
(`auto_workers`, `share_cores`). `launch.sweep` drives it from the
flagfiles in `launch/experiments/`.
"""

from keras_kd.experiments.paper import PaperNumber
from keras_kd.experiments.plots import write_plots
from keras_kd.experiments.results import paper_markdown
from keras_kd.experiments.results import result_row
from keras_kd.experiments.results import summarize
from keras_kd.experiments.results import summary_markdown
from keras_kd.experiments.results import write_results
from keras_kd.experiments.sweep import SCALES
from keras_kd.experiments.sweep import Run
from keras_kd.experiments.sweep import auto_workers
from keras_kd.experiments.sweep import config_runs
from keras_kd.experiments.sweep import expand_grids
from keras_kd.experiments.sweep import finished_rows
from keras_kd.experiments.sweep import grid_runs
from keras_kd.experiments.sweep import run_id
from keras_kd.experiments.sweep import run_sweep
from keras_kd.experiments.sweep import shard
from keras_kd.experiments.sweep import share_cores

__all__ = [
    "SCALES",
    "PaperNumber",
    "Run",
    "auto_workers",
    "config_runs",
    "expand_grids",
    "finished_rows",
    "grid_runs",
    "paper_markdown",
    "result_row",
    "run_id",
    "run_sweep",
    "shard",
    "share_cores",
    "summarize",
    "summary_markdown",
    "write_plots",
    "write_results",
]
