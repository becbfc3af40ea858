"""Typed, frozen job configs: each setting declared once, validated once.

A job's config is a tree of frozen dataclasses whose leaves are declared
with `setting(...)`: the default, a one-line help, the constraints
(`choices`, bounds), and whether the setting shapes what a run computes
(`shapes_result`; where it writes and how it runs do not), which
`result_settings` reads for every key and run-folder hash. A config checks
those constraints when it is built
(`Config.__post_init__`), so a config that exists is valid. The launch apps
derive their absl flags from the same declarations (`launch/config_flags.py`),
each leaf under its flag name (`flag=`, default: the field's name); sweeps
and notebooks build the same objects, and vary them with `override`.

Example:

>>> @dataclasses.dataclass(frozen=True)
... class Inner(Config):
...     rate: float = setting(0.1, "A rate.", above=0.0)
>>> @dataclasses.dataclass(frozen=True)
... class Outer(Config):
...     inner: Inner = group(Inner)
...     name: str = setting("a", "A name.", choices=("a", "b"))
>>> [path for path, _, _ in leaf_settings(Outer)]
['inner.rate', 'name']
>>> override(Outer(), {"rate": 0.5}).inner.rate
0.5
>>> Outer(name="c")
Traceback (most recent call last):
...
ValueError: name must be one of ('a', 'b'); got 'c'.
"""

import dataclasses
import math
import types
import typing


def setting(default, help, *, flag=None, choices=None, lower=None, upper=None, above=None,
            below=None, shapes_result=True, preset=False):
    """A config leaf: its default, help and constraints.

    Args:
        default: the default value (`None` makes the setting optional).
        help: one line, shown by `--help` of the apps.
        flag: the flag's name, when it differs from the field's.
        choices: the allowed values.
        lower, upper: inclusive bounds of a number.
        above, below: exclusive bounds of a number (`above=0`: positive).
        shapes_result: `False` for a setting of where a run writes or how it
            runs (a folder, a strategy), which leaves what it computes
            unchanged: it stays out of `result_settings`, so out of every key.
        preset: a setting that names other settings' values (a recipe):
            `override` applies every other setting first, then hands the
            presets it was given to the config's `apply_presets`.
    """
    metadata = {"help": help, "flag": flag, "choices": choices, "lower": lower,
                "upper": upper, "above": above, "below": below,
                "shapes_result": shapes_result, "preset": preset}
    return dataclasses.field(default=default, metadata=metadata)


def like(config_class, name, **changes):
    """A leaf declared as `config_class`'s field `name` is, with `changes`
    (`flag=`, `help=`, ...) to its declaration.

    A setting two configs share is written once: its default and its bounds
    follow the original.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Base(Config):
    ...     epochs: int = setting(15, "Epochs.", lower=1)
    >>> @dataclasses.dataclass(frozen=True)
    ... class Member(Config):
    ...     epochs: int = like(Base, "epochs", flag="member_epochs")
    >>> Member().epochs, flag_paths(Member)
    (15, {'member_epochs': 'epochs'})
    """
    field = next((f for f in dataclasses.fields(config_class) if f.name == name), None)
    if field is None or field.metadata.get("group"):
        raise TypeError(f"{config_class.__name__} has no setting {name!r}.")
    unknown = sorted(set(changes) - set(field.metadata))
    if unknown:
        raise TypeError(f"like({config_class.__name__}, {name!r}): unknown changes {unknown}.")
    return dataclasses.field(default=field.default, metadata={**field.metadata, **changes})


def group(config_class):
    """A config field holding a nested config, built with its defaults."""
    return dataclasses.field(default_factory=config_class, metadata={"group": True})


class Config:
    """Base of the job configs: checks every `setting`'s constraints when built.

    A subclass adds its cross-field checks in `check()`, which runs after
    the per-setting ones.
    """

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if field.metadata.get("group"):
                continue
            _check_setting(self, field)
        self.check()

    def check(self):
        """Cross-field checks; raise a ValueError naming the setting."""

    def apply_presets(self, presets):
        """This config with the preset settings `{flag name: value}` applied
        (see `setting(..., preset=True)`); override where a config has some."""
        raise NotImplementedError(f"{type(self).__name__} has no preset settings.")


def _check_setting(config, field):
    kind, optional = leaf_type(type(config), field)
    _check_value(flag_name(field), kind, optional, field.metadata, getattr(config, field.name))


def _check_value(name, kind, optional, meta, value):
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} must be set; got None.")
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False; got {value!r}.")
        return
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if kind is float and (
        isinstance(value, bool) or not isinstance(value, (int, float))
        or not math.isfinite(value)
    ):
        # NaN and inf pass every bound check, then ruin a run after its teachers trained.
        raise ValueError(f"{name} must be a finite number; got {value!r}.")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string; got {value!r}.")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ValueError(f"{name} must be one of {tuple(meta['choices'])}; got {value!r}.")
    _check_range(name, meta, value)


def _check_range(name, meta, value):
    low = meta.get("lower") if meta.get("above") is None else meta["above"]
    high = meta.get("upper") if meta.get("below") is None else meta["below"]
    if low is not None and high is not None:
        in_range = (value > low if meta.get("above") is not None else value >= low) and \
            (value < high if meta.get("below") is not None else value <= high)
        if not in_range:
            opening = "(" if meta.get("above") is not None else "["
            closing = ")" if meta.get("below") is not None else "]"
            raise ValueError(
                f"{name} must be in {opening}{_bound(low)}, {_bound(high)}{closing}; "
                f"got {value!r}."
            )
        return
    if meta.get("above") is not None and not value > meta["above"]:
        raise ValueError(f"{name} must be > {_bound(meta['above'])}; got {value!r}.")
    if meta.get("lower") is not None and not value >= meta["lower"]:
        raise ValueError(f"{name} must be >= {_bound(meta['lower'])}; got {value!r}.")
    if meta.get("below") is not None and not value < meta["below"]:
        raise ValueError(f"{name} must be < {_bound(meta['below'])}; got {value!r}.")
    if meta.get("upper") is not None and not value <= meta["upper"]:
        raise ValueError(f"{name} must be <= {_bound(meta['upper'])}; got {value!r}.")


def _bound(number):
    """A bound as a message shows it: integers whole, other numbers short."""
    return str(number) if isinstance(number, int) else f"{number:g}"


def leaf_type(config_class, field):
    """`(type, optional)` of a leaf: `int | None` is `(int, True)`."""
    hint = typing.get_type_hints(config_class)[field.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = [arg for arg in args if arg is not type(None)]
        return kinds[0], type(None) in args
    return hint, False


def flag_name(field):
    """The flag of a leaf setting."""
    return field.metadata.get("flag") or field.name


def leaf_settings(config_class, prefix=""):
    """`(path, field, owner)` of every leaf of a config class, depth first.

    The path joins field names with dots (`"teacher.arch"`); `owner` is the
    config class that declares the field.
    """
    leaves = []
    for field in dataclasses.fields(config_class):
        path = prefix + field.name
        if field.metadata.get("group"):
            nested = typing.get_type_hints(config_class)[field.name]
            leaves.extend(leaf_settings(nested, path + "."))
        else:
            leaves.append((path, field, config_class))
    return leaves


def flag_paths(config_class):
    """`{flag name: path}` of a config class; flag names are unique."""
    paths = {}
    for path, field, _ in leaf_settings(config_class):
        name = flag_name(field)
        if name in paths:
            raise TypeError(
                f"{config_class.__name__}: {paths[name]!r} and {path!r} share the flag {name!r}."
            )
        paths[name] = path
    return paths


def flat(config, shaping_only=False):
    """`{flag name: value}` of every leaf of `config` (with `shaping_only`,
    of those that shape its result: see `result_settings`)."""
    values = {}
    for path, field, _ in leaf_settings(type(config)):
        if shaping_only and not field.metadata.get("shapes_result", True):
            continue
        value = config
        for part in path.split("."):
            value = getattr(value, part)
        values[flag_name(field)] = value
    return values


def result_settings(config):
    """`{flag name: value}` of the settings that shape what a run of `config`
    computes: every leaf but those declared `shapes_result=False`.

    >>> @dataclasses.dataclass(frozen=True)
    ... class Job(Config):
    ...     rate: float = setting(0.1, "A rate.")
    ...     output_dir: str = setting("out", "Where to write.", shapes_result=False)
    >>> result_settings(Job(output_dir="elsewhere"))
    {'rate': 0.1}
    """
    return flat(config, shaping_only=True)


def override(config, settings):
    """`config` with some leaves replaced, named by their flags; validated.

    Args:
        config: a `Config`.
        settings: `{flag name: value}`.

    Preset settings (`setting(..., preset=True)`, such as a recipe) are
    applied last, by the config's `apply_presets`, to the config the other
    settings give.

    Raises:
        ValueError: a name that is not one of the config's flags, or a value
            its constraints refuse.
    """
    paths = flag_paths(type(config))
    unknown = sorted(set(settings) - set(paths))
    if unknown:
        raise ValueError(
            f"Not settings of {type(config).__name__}: {unknown}; expected among {sorted(paths)}."
        )
    presets = preset_flags(type(config))
    nested = {}
    for name, value in settings.items():
        if name in presets:
            continue
        node = nested
        *parents, leaf = paths[name].split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    config = _replace(config, nested)
    given = {name: value for name, value in settings.items() if name in presets}
    return config.apply_presets(given) if given else config


def preset_flags(config_class):
    """The flag names of `config_class`'s preset settings."""
    return {flag_name(field) for _, field, _ in leaf_settings(config_class)
            if field.metadata.get("preset")}


def _replace(config, changes):
    updates = {}
    for name, change in changes.items():
        updates[name] = _replace(getattr(config, name), change) if isinstance(change, dict) \
            else change
    return dataclasses.replace(config, **updates)


def build(config_class, settings):
    """A config of `config_class` from `{flag name: value}`, defaults elsewhere."""
    return override(config_class(), settings)


def parse_value(config_class, name, text):
    """The value of flag `name` of `config_class` from its text (as on a command line).

    Example:

    >>> @dataclasses.dataclass(frozen=True)
    ... class Small(Config):
    ...     epochs: int = setting(1, "Epochs.", lower=1)
    >>> parse_value(Small, "epochs", "3")
    3
    """
    paths = flag_paths(config_class)
    if name not in paths:
        raise ValueError(
            f"{name!r} is not a setting of {config_class.__name__}; expected among "
            f"{sorted(paths)}."
        )
    _, field, owner = next(
        leaf for leaf in leaf_settings(config_class) if leaf[0] == paths[name]
    )
    kind, optional = leaf_type(owner, field)
    value = _parse_text(name, kind, optional, text.strip())
    _check_value(name, kind, optional, field.metadata, value)
    return value


def _parse_text(name, kind, optional, text):
    if optional and text.lower() in ("none", ""):
        return None
    if kind is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name}: expected true or false; got {text!r}.")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name}: expected a {kind.__name__}; got {text!r}.") from None


def command_line(config):
    """The flags that set `config` from the defaults of its class, as arguments.

    Preset settings (a recipe) are left out: the settings they gave are
    written out instead.

    Example:

    >>> @dataclasses.dataclass(frozen=True)
    ... class Small(Config):
    ...     epochs: int = setting(1, "Epochs.", lower=1)
    ...     fast: bool = setting(False, "Go fast.")
    >>> command_line(Small(epochs=3, fast=True))
    ['--epochs=3', '--fast']
    """
    defaults = flat(type(config)())
    presets = preset_flags(type(config))
    args = []
    for name, value in flat(config).items():
        if name in presets:
            continue  # a preset's settings are written out; it would apply twice
        if value == defaults[name] and type(value) is type(defaults[name]):
            continue
        if isinstance(value, bool):
            args.append(f"--{name}" if value else f"--no{name}")
        else:
            args.append(f"--{name}={value}")
    return args
