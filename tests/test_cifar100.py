"""The paper's CIFAR-100 experiments: their runs, and each end to end at smoke scale on TFDS
mock data (random images of CIFAR-100's shapes and classes; nothing is downloaded)."""

import json
import os

import keras
import pytest
import tensorflow as tf

from tests.test_launch import ROOT
from tests.test_sweep import _planned_configs
from tests.test_text import _mock_app

CIFAR100 = sorted(name[:-4] for name in os.listdir(os.path.join(ROOT, "launch", "experiments"))
                  if name.startswith("cifar100_") and name.endswith(".cfg"))


# The numbers the paper states for a cell of each experiment (checked against its text):
# (settings, metric) -> (relation, value).
STATED = {
    "cifar100_augmentation": {
        ((("policy", "crop_flip"), ("temperature", 4.0)), "test_agreement"): ("=", 0.845),
        ((("policy", "crop_flip+mixup"), ("temperature", 4.0)), "test_agreement"): ("=", 0.86),
    },
    "cifar100_gan_growth": {
        ((("members", 1), ("policy", "crop_flip+gan"), ("synthetic_fraction", 0.5)),
         "test_agreement"): ("<", 0.8),
        ((("members", 1), ("policy", "crop_flip+gan"), ("synthetic_fraction", 0.5)),
         "distill_agreement"): ("~", 0.95),
    },
    "cifar100_initialization": {
        ((("student_init", "interpolate:0"),), "test_agreement"): ("=", 0.77174),
        ((("student_init", "interpolate:0"),), "test_predictive_kl"): ("=", 0.836),
        ((("student_init", "interpolate:1"), ("student_init_from", "teacher_init")),
         "test_agreement"): ("=", 0.77098),
        ((("student_init", "interpolate:1"), ("student_init_from", "teacher_init")),
         "test_predictive_kl"): ("=", 0.838),
        ((), "test_teacher_accuracy"): ("=", 0.7052),
    },
    "cifar100_optimization": {
        ((("epochs", 300), ("optimizer", "sgd")), "train_agreement"): ("=", 0.7895),
    },
    "cifar100_data_recycling": {},  # "only around 85%": the best cell, not a named one
}


def _arch(experiment):
    """The architecture of an experiment's teachers and students (App. A.1, §6.2)."""
    return ("resnet20_ln" if experiment in ("cifar100_initialization", "cifar100_optimization")
            else "resnet56")


def test_the_paper_at_full_scale_has_its_experiments():
    assert CIFAR100 == ["cifar100_augmentation", "cifar100_data_recycling", "cifar100_gan_growth",
                        "cifar100_initialization", "cifar100_optimization"]


@pytest.mark.parametrize("experiment", CIFAR100)
def test_each_runs_in_the_papers_settings(tmp_path, experiment):
    runs = _planned_configs(tmp_path, experiment)
    seeds = {run.settings["seed"] for run in runs}
    assert seeds == set(range(10 if experiment == "cifar100_initialization" else 3))
    for run in runs:
        config, teacher, student = run.config, run.config.teacher_spec(), run.config.student_spec()
        assert config.data.dataset == "tfds:cifar100"
        # App. A.3: teachers 200 epochs at batch 256 and lr 0.1 (39,200 steps on 50,000 images),
        # students 300 epochs at batch 128 and lr 0.05 (117,300 steps), SGD, coupled L2 1e-4.
        teacher_images = 50_000 * config.teacher.data_fraction
        assert teacher.epochs * -(-teacher_images // 256) == 39_200
        assert (teacher.optimizer, teacher.lr, teacher.batch_size) == ("sgd", 0.1, 256)
        assert (teacher.weight_decay, teacher.weight_decay_type) == (1e-4, "coupled")
        distill_images = {"teacher": teacher_images, "fresh": 50_000 - teacher_images,
                          "all": 50_000}[config.distillation_set.data]
        steps = config.student.epochs * -(-distill_images // 128)
        target = 391_000 if config.student.epochs == 1000 else 117_300
        # Half the split (25,000 images, 196 batches) at twice the epochs: 117,600.
        assert abs(steps - target) / target < 0.01, run.run_id
        assert student.batch_size == 128 and (student.lr == 0.05 or "lr" in run.settings
                                              or "student_init" in run.settings)
        assert teacher.augment == "crop_flip"
        assert config.distillation_set.policy.startswith("crop_flip")
        assert config.distillation.alpha == 0.0
        assert config.control.enabled and config.reference.enabled
        arch = _arch(experiment)
        assert config.teacher.arch == config.student.arch == arch
        assert student.weight_decay == (0.0 if arch == "resnet20_ln" else 1e-4)


def test_figure_1_and_figure_3_have_the_papers_arms(tmp_path):
    growth = {(run.config.teacher.members, run.config.distillation_set.synthetic_fraction
               if "gan" in run.config.distillation_set.policy else 0.0)
              for run in _planned_configs(tmp_path, "cifar100_gan_growth")}
    # 0, 12.5k, 25k, 37.5k and 50k GAN images beside the 50k real ones.
    assert growth == {(m, f) for m in (1, 3) for f in (0.0, 0.2, 0.3333, 0.4286, 0.5)}
    arms = {(run.config.distillation_set.policy, run.config.distillation.temperature)
            for run in _planned_configs(tmp_path, "cifar100_augmentation")}
    assert arms == {("crop_flip", 1.0), ("crop_flip", 4.0), ("crop_flip+mixup", 1.0),
                    ("crop_flip+mixup", 4.0), ("crop_flip+gan", 4.0), ("crop_flip+ood", 4.0),
                    ("crop_flip+noise", 1.0)}
    assert {run.config.teacher.members for run in _planned_configs(
        tmp_path, "cifar100_augmentation")} == {5}


@pytest.fixture(scope="module")
def cifar100_saved_models(tmp_path_factory):
    """A saved_models folder per architecture, so the smoke sweeps that share teachers,
    controls or the GAN reuse them, as the configs run on one machine do."""
    root = tmp_path_factory.mktemp("cifar100")
    return lambda experiment: root / _arch(experiment)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [
    # Under `make test-all`'s two pytest processes, the experiments of one architecture go to
    # one process (xdist's loadgroup), where they share one folder.
    pytest.param(experiment, marks=pytest.mark.xdist_group(f"cifar100_{_arch(experiment)}"))
    for experiment in CIFAR100])
def test_each_runs_end_to_end_at_smoke_scale_on_mock_cifar100(cifar100_saved_models,
                                                               experiment):
    saved_models = cifar100_saved_models(experiment)
    # The reference student (the same run from an independent teacher: the same code at the
    # same shapes) doubles a sweep's models; at ResNet-56 it is another ensemble of up to five
    # members. It runs in the ResNet-20-LN experiments; the ResNet-56 ones run without it, so
    # the slow tier stays within CI's time on 2 cores.
    reference = _arch(experiment) == "resnet20_ln"
    # One process: TFDS' mock data is patched into this one only, not into spawned workers.
    _mock_app("sweep", f"--experiment={experiment}", "--scale=smoke", "--workers=1",
              "--verbose=0", f"--saved_models_dir={saved_models}",
              "--reference" if reference else "--noreference")
    sweep_dir = saved_models / "experiments" / f"{experiment}-smoke"
    with open(sweep_dir / "results.json") as f:
        rows = json.load(f)
    assert rows
    for row in rows:
        assert row["config"]["dataset"] == "tfds:cifar100"
        assert row["config"]["teacher_arch"] in ("resnet56", "resnet20_ln")
        assert row["config"]["reference"] == reference
        assert 0 <= row["metrics"]["test_agreement"] <= 1
        assert 0 <= row["metrics"]["test_control_agreement"] <= 1
        if reference:
            assert 0 <= row["metrics"]["test_reference_agreement"] <= 1
    if any("gan" in row["config"]["policy"] for row in rows):
        with open(saved_models / "tfds_cifar100" / "gan" / "metrics.json") as f:
            assert json.load(f)["num_samples"] == 64  # smoke scale rates one batch
    summary = (sweep_dir / "summary.md").read_text()
    # Smoke scale runs each grid's first and last point: the paper's cells among them.
    stated_here = any(dict(settings).items() <= row["settings"].items()
                      for settings, _ in STATED[experiment] for row in rows)
    assert ("## The paper's numbers beside ours" in summary) == stated_here


@pytest.mark.slow
def test_a_gan_arm_runs_on_two_mirrored_replicas_in_bfloat16_on_mock_cifar100(tmp_path):
    # The pieces at the paper's shapes together: ResNet-56 at batch 256 and 128, the GAN on
    # 32x32x3, a share of GAN images in each batch, MirroredStrategy, mixed precision
    # (bfloat16: float16 is emulated on CPUs). One run, without its references.
    _mock_app("sweep", "--experiment=cifar100_gan_growth", "--scale=smoke", "--shard=2/4",
              "--strategy=mirrored", "--cpu_replicas=2", "--precision=mixed_bfloat16",
              "--noreference", "--nocontrol", "--verbose=0", f"--saved_models_dir={tmp_path}")
    run = (tmp_path / "experiments" / "cifar100_gan_growth-smoke" / "runs" /
           "members=1,policy=crop_flip+gan,synthetic_fraction=0.2,seed=0")
    with open(run / "report.json") as f:
        report = json.load(f)
    config = report["config"]
    assert (config["strategy"], config["replicas"], config["precision"]) == (
        "mirrored", 2, "mixed_bfloat16")
    assert (config["student_arch"], config["batch_size"], config["teacher_batch_size"],
            config["synthetic_fraction"]) == ("resnet56", 128, 256, 0.2)
    assert 0 <= report["splits"]["test"]["agreement"] <= 1
    generator = keras.saving.load_model(tmp_path / "tfds_cifar100" / "gan" / "generator.keras",
                                        compile=False)
    assert generator.output_shape == (None, 32, 32, 3)
    served = tf.saved_model.load(report["artifacts"]["saved_model"])
    assert served.serve(tf.zeros((2, 32, 32, 3))).shape == (2, 100)


@pytest.mark.parametrize("experiment", CIFAR100)
def test_each_states_the_papers_numbers_beside_the_cells_they_are_stated_for(tmp_path,
                                                                              experiment):
    from launch import sweep as sweep_app

    runs = _planned_configs(tmp_path, experiment)
    numbers = sweep_app.paper_numbers()
    assert {(tuple(sorted(number.settings.items())), number.metric):
            (number.relation, number.value) for number in numbers} == STATED[experiment]
    for number in numbers:
        assert number.source
        assert any(number.matches(run.settings) for run in runs)


def test_a_papers_number_on_the_command_line_is_checked_before_any_run(tmp_path):
    from launch import sweep as sweep_app

    _planned_configs(tmp_path, "cifar100_optimization")
    for text, message in (
            ("members=1 | train_agreement=0.8 | x", "no configuration of the sweep has"),
            ("epochs=300 | train_agreemnt=0.8 | x", "not a metric of the summary table"),
            ("epochs=300,1000 | train_agreement=0.8 | x", "epochs has 2 values"),
            ("epochs=300 train_agreement=0.8", "expected 'settings | metric=value | where'"),
            ("epochs=300 | train_agreement=high | x", "got 'train_agreement=high'"),
            ("epoch=300 | train_agreement=0.8 | x", "'epoch' is not a setting")):
        sweep_app.FLAGS.paper = [text]
        with pytest.raises(sweep_app.app.UsageError, match=message):
            sweep_app.paper_numbers()
    sweep_app.FLAGS.unparse_flags()
