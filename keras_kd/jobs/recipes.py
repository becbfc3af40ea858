"""Recipes: named sets of distill settings that aim at a closer match.

A recipe changes what a student is distilled on, with which loss, for how
long: the settings of a `keras_kd.jobs.DistillConfig` it is applied to.
`--recipe=NAME` applies one to the settings the other flags give (last, so
it wins), and the run's config records its name; in Python,
`apply(config, name)`. With `--recipe_budget=equal` the student keeps the
epochs it was given, so a recipe with a longer schedule of its own is
measured at plain distillation's optimizer steps.

Example:

>>> base = keras_kd.jobs.DistillConfig(
...     distillation_set=keras_kd.jobs.DistillationSet(policy="shift"))
>>> patient = keras_kd.jobs.recipes.apply(base, "patient")
>>> patient.student.epochs, patient.cache.cached_views, patient.recipe
(120, 32, 'patient')
>>> keras_kd.jobs.recipes.apply(base, "function_matching").distillation_set.policy
'shift+mixup'
"""

import dataclasses

from keras_kd import losses

BUDGETS = ("own", "equal")
MIXING_STAGES = ("mixup", "cutmix")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named set of distill settings, with the source it comes from.

    Args:
        name: what `--recipe` calls it.
        summary: one line of what it changes.
        source: where the idea comes from.
        mixing: a stage that mixes pairs of inputs (`"mixup"`), added to the
            distillation-set policy unless it already mixes; the teacher is
            then run on exactly the mixed input the student sees.
        budget: the student's epochs are multiplied by it (with
            `recipe_budget="own"`).
        cached_views: augmented copies of the training set whose teacher
            outputs are cached, so the teacher runs once per view, not once
            per step (0: fresh views every step, teacher on each).
        loss: the distillation loss's name (`keras_kd.losses.LOSSES`), or
            `None` to keep the configured one.
    """

    name: str
    summary: str
    source: str
    mixing: str | None = None
    budget: float = 1.0
    cached_views: int = 0
    loss: str | None = None

    def apply(self, config, budget="own"):
        """`config` with this recipe's settings, its name recorded."""
        if budget not in BUDGETS:
            raise ValueError(f"recipe_budget must be one of {BUDGETS}; got {budget!r}.")
        student, cache = config.student, config.cache
        distillation, distillation_set = config.distillation, config.distillation_set
        if budget == "own" and self.budget != 1.0:
            student = dataclasses.replace(
                student, epochs=max(1, round(student.epochs * self.budget)))
        if self.mixing:
            distillation_set = dataclasses.replace(
                distillation_set, policy=_with_mixing(distillation_set.policy, self.mixing))
            cache = dataclasses.replace(cache, cached_views=0)
        if self.cached_views:
            cache = dataclasses.replace(cache, cached_views=self.cached_views)
        if self.loss:
            distillation = dataclasses.replace(distillation, loss=self.loss)
        return dataclasses.replace(
            config, student=student, cache=cache, distillation=distillation,
            distillation_set=distillation_set, recipe=self.name, recipe_budget=budget)


def _with_mixing(policy, stage):
    stages = policy.split("+")
    if any(name in MIXING_STAGES for name in stages):
        return policy
    return stage if stages == ["identity"] else f"{policy}+{stage}"


RECIPES = {
    recipe.name: recipe for recipe in (
        Recipe(
            "plain",
            "The study's distillation: the configured distillation set, loss and schedule, "
            "from a random start.",
            "Stanton et al., 2021, section 3.1 and App. A",
        ),
        Recipe(
            "function_matching",
            "Consistent mixed views: mixup added to the distillation set, the teacher run on "
            "exactly the mixed input the student sees, every step a fresh mix.",
            "Beyer et al., 2022, 'Knowledge distillation: A good teacher is patient and "
            "consistent', section 3 ('function matching')",
            mixing="mixup",
        ),
        Recipe(
            "patient",
            "A schedule 4x as long, on 32 cached augmented views of the training set (the "
            "teacher runs once per view).",
            "Beyer et al., 2022, section 4 ('patience': long schedules), with the views "
            "cached for cost",
            budget=4.0, cached_views=32,
        ),
        Recipe(
            "patient_function_matching",
            "Function matching on a schedule 4x as long: fresh mixed views every step, the "
            "teacher on each.",
            "Beyer et al., 2022: consistent views and patience together, their recipe",
            mixing="mixup", budget=4.0,
        ),
        Recipe(
            "logit_matching",
            "Regress the teacher's logits (mean squared error) instead of the softened KL.",
            "Ba and Caruana, 2014; Kim et al., 2021 ('Comparing Kullback-Leibler divergence "
            "and mean squared error loss in knowledge distillation'); the study's section 3.1 "
            "(T^2 * KL tends to logit matching as T grows)",
            loss="logit_mse",
        ),
    )
}


def register_recipe(recipe):
    """Makes `recipe` (a `Recipe`) available by its name, for `--recipe`."""
    if recipe.loss is not None:
        losses.check_name(recipe.loss)
    RECIPES[recipe.name] = recipe


def check_name(name):
    """Raises a ValueError naming `name` when no recipe is registered under it."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; expected one of {sorted(RECIPES)}.")


def apply(config, name, budget="own"):
    """`config` with the recipe `name` applied (see `Recipe.apply`).

    A config takes one recipe, applied once: one that already records a
    recipe other than `plain` is refused.
    """
    check_name(name)
    if config.recipe != "plain":
        raise ValueError(
            f"This config already has the recipe {config.recipe!r} applied (recipe_budget="
            f"{config.recipe_budget!r}); a recipe is applied once: set recipe and "
            "recipe_budget together, on settings without one.")
    return RECIPES[name].apply(config, budget)
