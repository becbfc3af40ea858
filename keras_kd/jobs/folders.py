"""Where each job reads and writes: every default folder, resolved in one place.

A folder is its setting when set (`--teachers_dir`, `--output_dir`, ...),
else a path under `<saved_models_dir>/<dataset slug>/`:

    teachers        teacher members          <root>/<dataset>/teachers
    controls        independent students     <root>/<dataset>/controls
    references      the paper's references   <root>/<dataset>/references
    teacher_cache   disk caches of logits    <root>/<dataset>/teacher_cache
    generator       the gan stage's file     <root>/<dataset>/gan/generator.keras
    gan             the GAN job's folder     <root>/<dataset>/gan
    distill         a distill run's folder   <root>/<dataset>/distill/<run name>
    teachers_job    the teachers job's       --output_dir, else `teachers`

Example:

>>> config = keras_kd.jobs.DistillConfig()
>>> path(config, "digits", "teachers")
'saved_models/digits/teachers'
>>> path(config, "digits", "distill") == f"saved_models/digits/distill/{config.run_name()}"
True
"""

import os

# name -> (the config setting that chooses it, its default: a path under the
# dataset's folder, or the name of another folder).
_FOLDERS = {
    "teachers": ("teacher.directory", lambda config: ("teachers",)),
    "controls": ("control.directory", lambda config: ("controls",)),
    "references": ("reference.directory", lambda config: ("references",)),
    "teacher_cache": ("cache.directory", lambda config: ("teacher_cache",)),
    "generator": ("distillation_set.generator", lambda config: ("gan", "generator.keras")),
    "gan": ("output.directory", lambda config: ("gan",)),
    "distill": ("output.directory", lambda config: ("distill", config.run_name())),
    "teachers_job": ("output.directory", "teachers"),
}
NAMES = tuple(_FOLDERS)


def path(config, dataset_slug, name):
    """The folder (or file) `name` of a job's `config`, its default filled in.

    Args:
        config: a job config with the setting `name` reads.
        dataset_slug: the dataset's folder name (`DatasetInfo.slug`).
        name: one of `NAMES`.
    """
    if name not in _FOLDERS:
        raise ValueError(f"Unknown folder {name!r}; expected one of {NAMES}.")
    setting, default = _FOLDERS[name]
    chosen = config
    for part in setting.split("."):
        chosen = getattr(chosen, part)
    if chosen:
        return chosen
    if isinstance(default, str):
        return path(config, dataset_slug, default)
    return os.path.join(config.output.saved_models_dir, dataset_slug, *default(config))
