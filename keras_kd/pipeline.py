"""The main job: train a teacher ensemble, distill a student, report fidelity.

`run(DistillConfig(...))` is what `python -m launch.distill` does; call it
from a notebook or a sweep to get the same run and the same files.
"""

import dataclasses
import os
import time

import keras

from keras_kd import data as data_lib
from keras_kd import evaluation
from keras_kd import export
from keras_kd import models
from keras_kd import training
from keras_kd.distiller import Distiller
from keras_kd.distiller import check_hyperparameters
from keras_kd.ensemble import Ensemble


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """Everything a distillation run depends on.

    Defaults follow the study (pure distillation, `alpha=0`, at temperature 4,
    from a 3-member ensemble) at a scale that runs in minutes on a CPU.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    teacher_arch: str = "resnet20"
    members: int = 3
    teacher_epochs: int = 15
    student_arch: str = "resnet8"
    alpha: float = 0.0
    temperature: float = 4.0
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    output_dir: str | None = None
    teachers_dir: str | None = None
    saved_models_dir: str = "saved_models"

    def teacher_spec(self):
        return training.ClassifierSpec(
            arch=self.teacher_arch,
            epochs=self.teacher_epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )

    def student_spec(self):
        return dataclasses.replace(
            self.teacher_spec(), arch=self.student_arch, epochs=self.epochs
        )

    def validate(self):
        """Raises a ValueError naming the first bad setting, before any work."""
        self.teacher_spec().validate()
        self.student_spec().validate()
        if not isinstance(self.members, int) or self.members < 1:
            raise ValueError(f"members must be a positive integer; got {self.members!r}.")
        check_hyperparameters(self.alpha, self.temperature)

    def resolved_dirs(self, dataset_slug):
        """The (output_dir, teachers_dir) of this run, defaults filled in."""
        root = os.path.join(self.saved_models_dir, dataset_slug)
        run_name = (
            f"{self.student_arch}_from_{self.members}x{self.teacher_arch}"
            f"_T{self.temperature:g}_a{self.alpha:g}_s{self.seed}"
        )
        output_dir = self.output_dir or os.path.join(root, "distill", run_name)
        teachers_dir = self.teachers_dir or os.path.join(root, "teachers")
        return output_dir, teachers_dir


def run(config, verbose="auto"):
    """Runs the main job and writes its files; returns the report.

    Writes `<output_dir>/report.json` (`{"config", "splits", "artifacts",
    "timing"}`), `<output_dir>/report.md`, and the student as
    `<output_dir>/saved_model` and `<output_dir>/student.keras`. Teachers are
    reused from (or saved to) `<teachers_dir>`.
    """
    config.validate()
    data = data_lib.load(config.dataset, data_dir=config.data_dir)
    output_dir, teachers_dir = config.resolved_dirs(data.info.slug)
    timing = {}

    started = time.perf_counter()
    members = training.ensemble_members(
        config.teacher_spec(), data, config.members, teachers_dir, verbose
    )
    teacher = Ensemble([member["path"] for member in members])
    timing["teachers_s"] = time.perf_counter() - started

    started = time.perf_counter()
    student_spec = config.student_spec()
    keras.utils.set_random_seed(training.derived_seed(config.seed, "student"))
    student = models.get(config.student_arch, data.info.input_shape, data.info.num_classes)
    distiller = Distiller(student, teacher, alpha=config.alpha, temperature=config.temperature)
    distiller.compile(optimizer=student_spec.optimizer_for(data.info.num_train))
    distiller.fit(
        data_lib.batched(data.train, config.batch_size, shuffle=True, seed=config.seed),
        epochs=config.epochs,
        validation_data=data_lib.batched(data.test, config.batch_size),
        verbose=verbose,
        shuffle=False,  # batched() already reshuffles every epoch
    )
    timing["distill_s"] = time.perf_counter() - started

    started = time.perf_counter()
    splits = {
        "train": data_lib.batched(data.train, config.batch_size),
        "test": data_lib.batched(data.test, config.batch_size),
    }
    split_metrics = evaluation.fidelity_report(teacher, student, splits)
    timing["evaluate_s"] = time.perf_counter() - started

    artifacts = export.export_student(student, output_dir)
    artifacts["teachers"] = [member["path"] for member in members]
    artifacts["report_md"] = os.path.join(output_dir, "report.md")
    report = {
        "config": {**dataclasses.asdict(config), "output_dir": output_dir, "teachers_dir": teachers_dir},
        "dataset": dataclasses.asdict(data.info),
        "splits": split_metrics,
        "teacher_members": members,
        "artifacts": artifacts,
        "timing": timing,
    }
    export.write_text(report_markdown(report), artifacts["report_md"])
    export.write_json(report, os.path.join(output_dir, "report.json"))
    return report


def report_markdown(report):
    """The report as Markdown: the run, the fidelity table, the files."""
    config = report["config"]
    lines = [
        f"# Distillation report: {config['dataset']}",
        "",
        f"Student `{config['student_arch']}` distilled from a "
        f"{config['members']}-member `{config['teacher_arch']}` ensemble "
        f"(alpha={config['alpha']:g}, temperature={config['temperature']:g}, "
        f"{config['epochs']} epochs, seed {config['seed']}).",
        "",
        evaluation.markdown_table(report["splits"]),
        "",
        "Agreement and predictive KL (nats) compare the student with the teacher "
        "at temperature 1; ECE is each model's calibration against labels.",
        "",
        f"Student: `{report['artifacts']['saved_model']}` (SavedModel), "
        f"`{report['artifacts']['keras']}` (Keras).",
    ]
    return "\n".join(lines) + "\n"
