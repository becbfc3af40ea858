"""Recipes: named settings applied over a distill config, once, and recorded."""

import pytest

import keras_kd
from keras_kd import config as config_lib
from keras_kd.jobs import DistillConfig
from keras_kd.jobs import recipes

BASE = {"dataset": "mnist1d", "policy": "shift", "epochs": 100}


def _built(**settings):
    return config_lib.build(DistillConfig, {**BASE, **settings})


def test_each_recipe_changes_its_settings_and_records_its_name():
    plain = _built()
    patient = _built(recipe="patient")
    assert (patient.student.epochs, patient.cache.cached_views) == (400, 32)
    assert (patient.recipe, patient.recipe_budget) == ("patient", "own")
    matching = _built(recipe="function_matching")
    assert matching.distillation_set.policy == "shift+mixup"
    assert matching.student.epochs == 100 and matching.cache.cached_views == 0
    both = _built(recipe="patient_function_matching")
    assert (both.distillation_set.policy, both.student.epochs) == ("shift+mixup", 400)
    assert _built(recipe="logit_matching").distillation.loss == "logit_mse"
    assert config_lib.result_settings(_built(recipe="plain")) == config_lib.result_settings(plain)


def test_the_recipe_applies_over_the_other_settings_whatever_their_order():
    later = config_lib.build(DistillConfig, {"recipe": "patient", **BASE})
    assert later.student.epochs == 400
    equal = _built(recipe="patient", recipe_budget="equal")
    assert (equal.student.epochs, equal.cache.cached_views) == (100, 32)


def test_mixing_is_added_once_and_to_the_bare_signals_alone():
    assert _built(recipe="function_matching", policy="identity").distillation_set.policy == \
        "mixup"
    assert _built(recipe="function_matching",
                  policy="shift+cutmix").distillation_set.policy == "shift+cutmix"


def test_a_recipe_is_applied_once():
    patient = _built(recipe="patient")
    with pytest.raises(ValueError, match="already has the recipe 'patient' applied"):
        config_lib.override(patient, {"recipe": "patient"})
    with pytest.raises(ValueError, match="already has the recipe 'patient' applied"):
        config_lib.override(patient, {"recipe_budget": "equal"})
    # Settings that do not name a recipe leave the applied one alone.
    assert config_lib.override(patient, {"seed": 3}).student.epochs == 400


def test_the_command_line_of_a_recipe_run_writes_its_settings_out():
    patient = _built(recipe="patient")
    args = config_lib.command_line(patient)
    assert "--epochs=400" in args and "--cached_views=32" in args
    assert not any(arg.startswith("--recipe") for arg in args)
    parsed = dict(arg[2:].split("=", 1) for arg in args)
    rebuilt = config_lib.build(DistillConfig, {
        name: config_lib.parse_value(DistillConfig, name, text) for name, text in parsed.items()})
    assert config_lib.result_settings(rebuilt) == config_lib.result_settings(patient)


def test_bad_recipe_settings_are_named():
    with pytest.raises(ValueError, match="Unknown recipe 'slow'; expected one of"):
        _built(recipe="slow")
    with pytest.raises(ValueError, match="recipe_budget must be one of"):
        _built(recipe="patient", recipe_budget="double")


def test_a_users_recipe_is_registered_by_name():
    recipe = recipes.Recipe("reverse_for_test", "Reverse KL.", "a test", loss="reverse_kl",
                            budget=2.0)
    recipes.register_recipe(recipe)
    try:
        config = _built(recipe="reverse_for_test")
        assert (config.distillation.loss, config.student.epochs) == ("reverse_kl", 200)
    finally:
        del recipes.RECIPES["reverse_for_test"]
    with pytest.raises(ValueError, match="Unknown distillation loss 'huber'"):
        recipes.register_recipe(recipes.Recipe("bad", "", "", loss="huber"))


def test_a_recipe_run_reports_its_recipe_and_loss(tmp_path):
    config = config_lib.build(DistillConfig, {
        "saved_models_dir": str(tmp_path), "teacher_arch": "mlp", "student_arch": "mlp",
        "members": 1, "teacher_epochs": 1, "epochs": 1, "policy": "crop_flip",
        "recipe": "function_matching", "control": False})
    report = keras_kd.jobs.distill.run(config, verbose=0)
    assert report["config"]["recipe"] == "function_matching"
    assert report["config"]["policy"] == "crop_flip+mixup"
    assert report["config"]["distillation_loss"] == "KLDistillation(alpha=0.0, temperature=4.0)"
    assert report["config"]["recipe_summary"].startswith("Consistent mixed views")
