"""A study-shaped run, timed as a bare training process, as the `Distiller`, and as the job.

The same network, data, batch size and number of optimizer steps, each in a
fresh process (interpreter, imports, data, models and tracing included, as
a user's run pays them):

- `bare`: the limit. A process that loads the data and the teacher, builds
  the student and `fit`s a `keras.Model` whose `train_step` calls the
  teacher on the batch and fits the student to it with the
  temperature-scaled KL, nothing else (no metrics, no checks, no
  callbacks), on the job's own distillation set (the same augmented
  batches);
- `distiller`: the same process with `keras_kd.Distiller`;
- `job`: `python -m launch.distill` end to end, its teachers and control
  trained by an untimed first run and reused, split into start-up (the
  process's wall time outside the job's own sections: interpreter,
  imports, data, writing the report), teachers, control, distillation set,
  training steps, per-epoch fidelity, backups, evaluation and export;
- `sweep_<N>_workers`: `python -m launch.sweep` of `--sweep_runs` such
  runs (the same teacher and control, one temperature each), done by N
  processes at once, for each N of `--sweep_workers`; its ratio to `bare`
  is per run (the sweep's wall time over `--sweep_runs` bare runs).

Each is reported in seconds and as a ratio to `bare`; `*_fit_s` is the
`fit` alone and `*_step_ms` the mean step after the first epoch (tracing
excluded); `interleaved_*_step_ms` time the two steps in one process, fit
by fit in turn (medians of 15 fits of 20 epochs), which removes the spread between processes
from the step ratio. The cases alternate over `--repeats` rounds (this machine slows
down in spells, which then fall on every case alike), and each figure is the
median over rounds. The last line printed is one JSON object.

    python -m benchmarks.study_run
    python -m benchmarks.study_run --epochs=10 --members=1
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import app
from absl import flags

import keras_kd
from keras_kd import config as config_lib
from keras_kd import data as data_lib
from keras_kd import jobs

flags.DEFINE_string("dataset", "mnist1d:num_train=500", "Dataset of the run.")
flags.DEFINE_string("data_dir", None, "Where generated MNIST-1D is kept.")
flags.DEFINE_string("teacher_arch", "resnet8", "Teacher member architecture.")
flags.DEFINE_integer("members", 3, "Teacher ensemble size.", lower_bound=1)
flags.DEFINE_integer("teacher_epochs", 30, "Epochs of each member (trained once, untimed).",
                     lower_bound=1)
flags.DEFINE_string("student_arch", "resnet8", "Student architecture.")
flags.DEFINE_string("policy", "shift", "Distillation-set policy (stochastic: teacher in the loop).")
flags.DEFINE_integer("epochs", 60, "Student epochs.", lower_bound=2)
flags.DEFINE_integer("batch_size", 64, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Alternating rounds of bare and distiller (medians).",
                     lower_bound=1)
flags.DEFINE_integer("sweep_runs", 4, "Runs of the timed sweeps (0: no sweep).", lower_bound=0)
flags.DEFINE_list("sweep_workers", ["1", "2"], "Workers of each timed sweep.")
flags.DEFINE_enum("case", None, ["bare", "distiller", "steps"],
                  "Internal: run this one case in this process and print its timing.")
flags.DEFINE_string("saved_models_dir", None,
                    "Where the job's teachers, control and runs go (default: a new temp folder).")

FLAGS = flags.FLAGS

# The study's recipe (launch/experiments/self_distillation.cfg), T=4, alpha=0.
_RECIPE = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4, "temperature": 4.0,
           "alpha": 0.0, "teacher_augment": "shift"}


class BareDistillation(keras.Model):
    """The least a distillation step does: teacher forward, student forward and
    backward on `T^2 * KL(teacher || student)` at temperature T, one update."""

    def __init__(self, student, teacher, temperature):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.temperature = temperature

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def train_step(self, data):
        x = data["x"]
        teacher_logits = self.teacher(x, training=False)
        weights = self.student.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            targets = tf.nn.softmax(teacher_logits / self.temperature)
            kl = tf.reduce_sum(targets * (tf.nn.log_softmax(teacher_logits / self.temperature)
                                          - tf.nn.log_softmax(logits / self.temperature)), -1)
            loss = self.temperature**2 * tf.reduce_mean(kl)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
        return {"loss": loss}  # the step's own loss: no metric is kept


def _config(saved_models_dir, output_dir):
    settings = {
        **_RECIPE, "dataset": FLAGS.dataset, "teacher_arch": FLAGS.teacher_arch,
        "members": FLAGS.members, "teacher_epochs": FLAGS.teacher_epochs,
        "student_arch": FLAGS.student_arch, "policy": FLAGS.policy, "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size, "saved_models_dir": saved_models_dir,
        "output_dir": output_dir, "data_dir": FLAGS.data_dir,
    }
    return config_lib.build(jobs.DistillConfig, settings)


def _run_job(config):
    """`(wall seconds, report)` of launch.distill for `config`, in a fresh process."""
    command = [sys.executable, "-m", "launch.distill", *config_lib.command_line(config),
               "--verbose=0"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    wall = time.perf_counter() - started
    with open(os.path.join(config.output.directory, "report.json")) as f:
        return wall, json.load(f)


def _run_sweep(config, workers, experiments_dir):
    """Wall seconds of launch.sweep over `--sweep_runs` temperatures of
    `config`, in a fresh process with `workers` workers."""
    base = [flag for flag in config_lib.command_line(config)
            if not flag.startswith(("--output_dir=", "--temperature="))]
    temperatures = ",".join(str(2.0 + index) for index in range(FLAGS.sweep_runs))
    command = [sys.executable, "-m", "launch.sweep", *base, f"--grid=temperature={temperatures}",
               f"--seeds={config.training.seed}", f"--experiments_dir={experiments_dir}",
               f"--workers={workers}", "--noplots", "--verbose=0"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.perf_counter() - started


def _job_split(wall, timing):
    """The job's wall time by part; `training_steps_s` is `distill_s` less the
    fidelity passes and the backups made inside it."""
    inside = sum(value for key, value in timing.items() if key not in ("fidelity_s", "backup_s"))
    split = {
        "startup_s": wall - inside,
        "teachers_s": timing.get("teachers_s", 0.0),
        "control_s": timing.get("control_s", 0.0),
        "distillation_set_s": timing.get("distillation_set_s", 0.0),
        "training_steps_s": timing.get("distill_s", 0.0) - timing.get("fidelity_s", 0.0)
        - timing.get("backup_s", 0.0),
        "fidelity_s": timing.get("fidelity_s", 0.0),
        "backups_s": timing.get("backup_s", 0.0),
        "evaluate_s": timing.get("evaluate_s", 0.0),
        "export_s": timing.get("export_s", 0.0),
    }
    return {name: round(value, 3) for name, value in split.items()}


class _EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.ends = [time.perf_counter()]

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())


def _fit_seconds(make_model, config, data):
    """`(fit seconds, mean step seconds after the first epoch, steps per epoch)`."""
    keras.utils.set_random_seed(0)
    student = keras_kd.models.for_data(config.student.arch, data.info)
    model = make_model(student)
    distill_set = data_lib.distillation_set(
        data.train, data.info.num_classes, config.distillation_set.resolve(data.info.name),
        batch_size=config.training.batch_size, seed=config.training.seed, cache="off",
        epochs=config.student.epochs)
    steps = data_lib.steps_per_epoch(distill_set, config.student.epochs)
    model.compile(optimizer=config.student_spec().optimizer_for(data.info.num_train, steps))
    times = _EpochTimes()
    started = time.perf_counter()
    model.fit(distill_set, epochs=config.student.epochs, steps_per_epoch=steps, shuffle=False,
              callbacks=[times], verbose=0)
    seconds = time.perf_counter() - started
    later_epochs = times.ends[-1] - times.ends[1]
    return seconds, later_epochs / (steps * (config.student.epochs - 1)), steps


def _models(config):
    """`(data, {case: make_model(student)})` of the timed run."""
    with open(os.path.join(config.output.directory, "report.json")) as f:
        members = json.load(f)["artifacts"]["teachers"]
    data = data_lib.load(config.data.dataset, data_dir=config.data.data_dir)
    teacher = keras_kd.Ensemble(members)
    temperature = config.distillation.temperature
    return data, {
        "bare": lambda student: BareDistillation(student, teacher, temperature),
        "distiller": lambda student: keras_kd.Distiller(
            teacher=teacher, student=student, temperature=temperature),
    }


def _one_case(name):
    """Runs one fit case in this process; prints `{fit_s, step_s, steps}`."""
    config = _config(FLAGS.saved_models_dir, os.path.join(FLAGS.saved_models_dir, "timed"))
    data, make_models = _models(config)
    if name == "steps":
        return print(json.dumps(_interleaved_steps(make_models, config, data)))
    fit_s, step_s, steps = _fit_seconds(make_models[name], config, data)
    print(json.dumps({"fit_s": fit_s, "step_s": step_s, "steps": steps}))


def _interleaved_steps(make_models, config, data, rounds=15, epochs_per_fit=20):
    """The median step seconds of each case's fits, in one process, the cases
    alternating fit by fit (after a first, tracing fit): the steps compared
    without the spread between processes."""
    epoch = data_lib.distillation_set(
        data.train, data.info.num_classes, config.distillation_set.resolve(data.info.name),
        batch_size=config.training.batch_size, seed=config.training.seed, cache="off")
    per_epoch = data_lib.steps_per_epoch(epoch)
    fits = {}
    for name, make_model in make_models.items():
        keras.utils.set_random_seed(0)
        model = make_model(keras_kd.models.for_data(config.student.arch, data.info))
        model.compile(optimizer=config.student_spec().optimizer_for(data.info.num_train,
                                                                    per_epoch))
        model.fit(epoch.repeat(), epochs=1, steps_per_epoch=per_epoch, verbose=0)
        fits[name] = (model, epoch.repeat())
    steps = per_epoch * min(epochs_per_fit, config.student.epochs)
    seconds = {name: [] for name in fits}
    for _ in range(rounds):
        for name, (model, batches) in fits.items():
            started = time.perf_counter()
            model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
            seconds[name].append((time.perf_counter() - started) / steps)
    return {f"{name}_step_s": statistics.median(values) for name, values in seconds.items()}


def _run_case(name):
    """`(process wall seconds, the case's own figures)` of one fit case."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.study_run", *_forwarded_flags(), f"--case={name}"],
        check=True, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.perf_counter() - started, json.loads(result.stdout.strip().splitlines()[-1])


def _forwarded_flags():
    names = ("dataset", "data_dir", "teacher_arch", "members", "teacher_epochs", "student_arch",
             "policy", "epochs", "batch_size", "saved_models_dir")
    return [f"--{name}={FLAGS[name].value}" for name in names if FLAGS[name].value is not None]


def _median(values):
    return round(statistics.median(values), 3)


def main(argv):
    del argv
    if FLAGS.case:
        return _one_case(FLAGS.case)
    FLAGS.saved_models_dir = FLAGS.saved_models_dir or tempfile.mkdtemp(prefix="study_run-")
    saved = FLAGS.saved_models_dir
    # Untimed: trains the members and the control every timed run reuses.
    _run_job(_config(saved, os.path.join(saved, "timed")))
    rounds = {"bare": [], "distiller": [], "job": []}
    for index in range(FLAGS.repeats):
        for name in ("bare", "distiller"):
            rounds[name].append(_run_case(name))
        wall, report = _run_job(_config(saved, os.path.join(saved, f"job_{index}")))
        assert all(member["reused"] for member in report["teacher_members"])
        rounds["job"].append((wall, _job_split(wall, report["timing"])))
    _, interleaved = _run_case("steps")
    bare_s = _median(wall for wall, _ in rounds["bare"])
    bare_step = statistics.median(case["step_s"] for _, case in rounds["bare"])
    distiller_s = _median(wall for wall, _ in rounds["distiller"])
    distiller_step = statistics.median(case["step_s"] for _, case in rounds["distiller"])
    job_s = _median(wall for wall, _ in rounds["job"])
    split = {name: _median(parts[name] for _, parts in rounds["job"])
             for name in rounds["job"][0][1]}
    steps = rounds["bare"][0][1]["steps"]
    figures = {
        "dataset": FLAGS.dataset, "members": FLAGS.members, "student": FLAGS.student_arch,
        "policy": FLAGS.policy, "epochs": FLAGS.epochs, "steps": steps * FLAGS.epochs,
        "repeats": FLAGS.repeats,
        "bare_s": bare_s, "bare_fit_s": _median(case["fit_s"] for _, case in rounds["bare"]),
        "bare_step_ms": round(1e3 * bare_step, 3),
        "distiller_s": distiller_s,
        "distiller_fit_s": _median(case["fit_s"] for _, case in rounds["distiller"]),
        "distiller_step_ms": round(1e3 * distiller_step, 3),
        "distiller_vs_bare": round(distiller_s / bare_s, 3),
        "distiller_step_vs_bare_step": round(distiller_step / bare_step, 3),
        "interleaved_bare_step_ms": round(1e3 * interleaved["bare_step_s"], 3),
        "interleaved_distiller_step_ms": round(1e3 * interleaved["distiller_step_s"], 3),
        "interleaved_distiller_step_vs_bare_step": round(
            interleaved["distiller_step_s"] / interleaved["bare_step_s"], 3),
        "job_s": job_s, "job_vs_bare": round(job_s / bare_s, 3), "job_split": split,
        "job_split_vs_bare": {name: round(value / bare_s, 3) for name, value in split.items()},
    }
    for workers in FLAGS.sweep_workers if FLAGS.sweep_runs else ():
        seconds = round(_run_sweep(_config(saved, None), int(workers),
                                   os.path.join(saved, f"sweep_{workers}")), 3)
        figures[f"sweep_{workers}_workers_s"] = seconds
        figures[f"sweep_{workers}_workers_per_run_vs_bare"] = round(
            seconds / (FLAGS.sweep_runs * bare_s), 3)
    if FLAGS.sweep_runs:
        figures["sweep_runs"] = FLAGS.sweep_runs
    print(json.dumps(figures))


if __name__ == "__main__":
    app.run(main)
