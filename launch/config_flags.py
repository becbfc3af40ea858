"""absl flags derived from a job's config: one flag per setting, declared once.

`define_config_flags(DistillConfig)` defines a flag for every leaf setting of
the config (its flag name, default, help, choices and bounds come from the
setting's declaration in `keras_kd.jobs.configs`); `config_from_flags` builds
the config back from the parsed flags, validated, or exits with a usage error
that names the bad setting. A new setting is a new field: its flag follows.

The flags defined here belong to the app that asks for them, so its `--help`
lists them first; `run` starts an app so that a usage error is one line, not
a page of help with the error at its end.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from keras_kd import config as config_lib

FLAGS = flags.FLAGS
# absl credits a flag to the module that defines it: credit the app instead.
flags.disclaim_key_flags()
# {alias: flag} of the aliases `define_alias` made.
_ALIASES = {}


def define_config_flags(config_class, defaults=None):
    """Defines a flag for every setting of `config_class`, and `--verbose`.

    Args:
        config_class: a `keras_kd.config.Config` dataclass.
        defaults: a config whose values are the flags' defaults (default:
            `config_class()`).

    Returns:
        The flag names, in declaration order.
    """
    if "verbose" not in FLAGS:
        flags.DEFINE_enum(
            "verbose", "auto", ["auto", "0", "1", "2"],
            "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.",
        )
    defaults = config_lib.flat(defaults or config_class())
    names = []
    for _, field, owner in config_lib.leaf_settings(config_class):
        name = config_lib.flag_name(field)
        kind, _ = config_lib.leaf_type(owner, field)
        _define(name, kind, defaults[name], field.metadata)
        names.append(name)
    return names


def _define(name, kind, default, meta):
    help_text = meta["help"]
    bounds = {}
    lower = meta.get("lower") if meta.get("lower") is not None else meta.get("above")
    if lower is not None:
        bounds["lower_bound"] = lower
    if meta.get("upper") is not None:
        bounds["upper_bound"] = meta["upper"]
    if meta.get("choices") is not None:
        flags.DEFINE_enum(name, default, [str(choice) for choice in meta["choices"]], help_text)
    elif kind is bool:
        flags.DEFINE_bool(name, default, help_text)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_text, **bounds)
    elif kind is float:
        flags.DEFINE_float(name, default, help_text, **bounds)
    else:
        flags.DEFINE_string(name, default, help_text)


def define_alias(alias, name):
    """`--alias` for `--name`; giving both is refused by `config_from_flags`
    (absl would silently keep the one given last)."""
    flags.DEFINE_alias(alias, name)
    _ALIASES[alias] = name


def _check_aliases():
    for alias, name in _ALIASES.items():
        # absl counts an alias's uses in both flags' `present`.
        if FLAGS[alias].present and FLAGS[name].present > FLAGS[alias].present:
            raise app.UsageError(
                f"--{alias} is another name for --{name}; pass one of them, not both."
            )


def config_from_flags(config_class, names=None):
    """The config of `config_class` from the parsed flags, or a usage error.

    Args:
        config_class: the config the flags were defined from.
        names: the flags to read (default: every setting's).
    """
    _check_aliases()
    paths = config_lib.flag_paths(config_class)
    names = names or list(paths)
    try:
        return config_lib.build(config_class, {name: FLAGS[name].value for name in names})
    except ValueError as error:
        raise app.UsageError(str(error))


def configure_logging():
    """Shows warnings and up unless --verbosity was given (-v 0 for INFO).

    TensorFlow logs every SavedModel write at INFO, and absl's `app.run`
    raises an unset --verbosity to INFO after parsing, so this runs in `main`.
    """
    if not FLAGS["verbosity"].present:
        logging.set_verbosity("warning")


def verbosity():
    """The --verbose flag as Keras takes it."""
    return FLAGS.verbose if FLAGS.verbose == "auto" else int(FLAGS.verbose)


def run_or_exit(job, *args, folder_flags="--output_dir, --saved_models_dir", **kwargs):
    """Calls `job`; a NaN loss ends the app with its message and exit code 1,
    and a dataset that cannot be used, or a setting that does not fit it, with
    a usage error (no traceback), before any training. A folder that cannot
    be written or is in use is named with the flags that choose it in this
    app (`folder_flags`)."""
    from keras_kd import callbacks
    from keras_kd import data
    from keras_kd import jobs

    try:
        return job(*args, **kwargs)
    except callbacks.NonFiniteLossError as error:
        raise SystemExit(f"error: {error}")
    except (jobs.FolderError, jobs.lock.FolderInUseError) as error:
        raise app.UsageError(f"{error} Folders are chosen by {folder_flags}.")
    except (jobs.ConfigError, data.DatasetError) as error:
        raise app.UsageError(str(error))


def run(main, flags_parser=None):
    """`absl.app.run(main)`, with a usage error printed first, as `error:
    <message>` and where the help is, not after the whole help text."""
    def main_with_short_errors(argv):
        try:
            return main(argv)
        except app.UsageError as error:
            spec = getattr(sys.modules["__main__"], "__spec__", None)
            program = f"python -m {spec.name}" if spec else sys.argv[0]
            sys.stderr.write(f"error: {error}\nRun `{program} --helpshort` for the flags.\n")
            sys.exit(error.exitcode)

    app.run(main_with_short_errors, **({"flags_parser": flags_parser} if flags_parser else {}))
