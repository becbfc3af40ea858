"""Distillation-set policies: which stages build each batch, with what settings.

A policy is a `+`-separated list of stage names, e.g. `"crop_flip+mixup"`:

- `identity`: the inputs as they are (the only static policy);
- `crop_flip` (images): random crop after zero-padding (4 px at 32x32, scaled
  to the image size) plus a horizontal flip when `flip` is on;
- `shift` (signals): a random shift along the time axis after zero-padding
  (4 samples per 32, scaled to the signal's length: 5 at length 40);
- `noise`: additive Gaussian noise of standard deviation `noise_std`;
- `token_mask` (token ids): each token of a text replaced by the
  out-of-vocabulary token with probability `mask_rate` (padding kept);
- `mixup`, `cutmix`: mix pairs of examples and their labels (`mixup_alpha`
  is the Beta parameter of both, `mixup_portion` the share of each batch
  mixed); cutmix pastes a box of an image or a segment of a signal;
- the augmentation ablation (images): `rotation`, `hflip`, `vflip`,
  `perspective`, `grayscale`, `color_jitter`, `blur`;
- `gan`: a `synthetic_fraction` of each batch is drawn from a synthetic source
  (a generator); those examples carry no hard label and are distilled at
  `synthetic_temperature` (the distiller's temperature when `None`);
- `ood`: as `gan`, but the extra inputs are drawn from another dataset's
  training inputs (out-of-distribution inputs, e.g. MNIST-1D with its
  sequences shuffled, for MNIST-1D).

Stages run in the order given; `gan` and `ood` inputs are added after the
others, unaugmented.

Each stage states the kinds of inputs it applies to (`"images"`, `"signals"`,
`"features"`, `"tokens"`; see `keras_kd.data.DatasetInfo.kind`); a policy with a stage
that does not apply to a dataset's inputs is refused before any training.
Stages live in a registry, `STAGES`; `register_stage` adds one of your own
that every policy, flag and sweep then knows.

The stages' settings are declared once, in `StageSettings`: each with its
default, bounds and the stages that read it. `Policy` and the distill job's
`keras_kd.jobs.DistillationSet` both are `StageSettings`, so a new setting is
one field there: the flag, its checks, the run's keys and the report's
`policy_settings` follow from it.
"""

import dataclasses
from typing import Callable

from keras_kd.config import Config
from keras_kd.config import setting
from keras_kd.data import augment
from keras_kd.data import splits
from keras_kd.data.splits import input_kind


@dataclasses.dataclass(frozen=True)
class Stage:
    """A registered distillation-set stage.

    Attributes:
        name: its name in a policy spec.
        build: `build(policy, input_shape)` returns the batch transforms the
            stage adds, in order: callables `transform(batch, seed)` on dict
            batches (see `keras_kd.data.augment`) with a `name` and a
            `mixes_labels` attribute.
        mixes_labels: whether it turns labels into distributions.
        inputs: the kinds of inputs it applies to, among `INPUT_KINDS`.
        needs_rgb: whether images must have 3 channels.
        details: `details(policy, input_shape)` returns what the stage derives
            from the input shape, for reports (`{"crop_padding": 4}`), or `None`.
    """

    name: str
    build: Callable
    mixes_labels: bool = False
    inputs: tuple = ("images",)
    needs_rgb: bool = False
    details: Callable | None = None


# The stage registry: name -> Stage, in registration order.
STAGES = {}
INPUT_KINDS = (*splits.KINDS.values(), splits.TOKENS)
# Inputs of real values, which noise and mixing apply to (token ids are not).
_CONTINUOUS = tuple(splits.KINDS.values())


def register_stage(name, build, *, mixes_labels=False, inputs=("images",), needs_rgb=False,
                   details=None, overwrite=False):
    """Registers a distillation-set stage under `name`.

    Example:

    >>> import tensorflow as tf
    >>> def jitter(policy, input_shape):
    ...     def transform(batch, seed):
    ...         noise = tf.random.stateless_normal(tf.shape(batch["x"]), seed, stddev=0.01)
    ...         return {**batch, "x": batch["x"] + noise}
    ...     transform.name, transform.mixes_labels = "jitter", False
    ...     return [transform]
    >>> _ = keras_kd.data.register_stage("jitter", jitter, inputs=("signals", "features"))
    >>> keras_kd.data.Policy.parse("jitter+mixup").stages
    ('jitter', 'mixup')
    >>> del keras_kd.data.STAGES["jitter"]

    Returns:
        The registered `Stage`.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"A stage name is an identifier (no '+'); got {name!r}.")
    if name in STAGES and not overwrite:
        raise ValueError(f"A stage {name!r} is registered already; pass overwrite=True.")
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    unknown = [kind for kind in inputs if kind not in INPUT_KINDS]
    if unknown or not inputs:
        raise ValueError(f"Stage {name!r}: inputs must be kinds among {INPUT_KINDS}; "
                         f"got {inputs!r}.")
    STAGES[name] = Stage(name, build, mixes_labels, inputs, needs_rgb, details)
    return STAGES[name]


def _no_transforms(policy, input_shape):
    return []


def _crop_flip(policy, input_shape):
    stages = [augment.RandomCrop(policy.crop_padding(input_shape))]
    if policy.flip:
        stages.append(augment.ablation_stage("hflip", input_shape[-1]))
    return stages


def _ablation(name):
    return lambda policy, input_shape: [augment.ablation_stage(name, input_shape[-1])]


register_stage("identity", _no_transforms, inputs=INPUT_KINDS)
register_stage("crop_flip", _crop_flip, details=lambda policy, input_shape: {
    "crop_padding": policy.crop_padding(input_shape)})
register_stage("shift", lambda policy, input_shape: [
    augment.RandomCrop(policy.shift_padding(input_shape))], inputs="signals",
    details=lambda policy, input_shape: {"shift_padding": policy.shift_padding(input_shape)})
register_stage("noise", lambda policy, _: [augment.GaussianNoise(policy.noise_std)],
               inputs=_CONTINUOUS)
register_stage("mixup", lambda policy, _: [augment.MixUp(policy.mixup_alpha,
                                                          policy.mixup_portion)],
               mixes_labels=True, inputs=_CONTINUOUS)
register_stage("token_mask", lambda policy, _: [augment.TokenMask(policy.mask_rate)],
               inputs=splits.TOKENS)
register_stage("cutmix", lambda policy, _: [augment.CutMix(policy.mixup_alpha,
                                                            policy.mixup_portion)],
               mixes_labels=True, inputs=("signals", "images"))
for _name in ("rotation", "hflip", "vflip", "perspective", "grayscale", "color_jitter", "blur"):
    register_stage(_name, _ablation(_name), needs_rgb=_name == "grayscale")
del _name
# Synthetic examples are added by `distillation_set`, after the transforms:
# generator samples (gan), or inputs of another dataset (ood).
register_stage("gan", _no_transforms, inputs=_CONTINUOUS)
register_stage("ood", _no_transforms, inputs=_CONTINUOUS)
SYNTHETIC_STAGES = ("gan", "ood")
# Datasets of digits, where a mirror image is another symbol.
_DIGIT_DATASETS = ("digits", "tfds:mnist", "tfds:emnist", "tfds:svhn_cropped")


def default_flip(dataset_name):
    """Whether `crop_flip` flips horizontally by default: not for digits.

    >>> default_flip("digits"), default_flip("tfds:cifar10")
    (False, True)
    """
    return dataset_name.split("/")[0] not in _DIGIT_DATASETS


def stage_setting(stages, default, help, **constraints):
    """A `StageSettings` leaf read by `stages` (reported when a policy has one of them)."""
    field = setting(default, help, **constraints)
    return dataclasses.field(default=default, metadata={**field.metadata, "stages": stages})


@dataclasses.dataclass(frozen=True)
class StageSettings(Config):
    """The settings of the distillation-set stages, each declared once.

    Each is a `stage_setting`: its default, help, bounds and the stages that
    read it, which `Policy.describe` reports when the policy has one of them.
    """

    mixup_alpha: float = stage_setting(
        ("mixup", "cutmix"), 1.0, "Beta(a, a) parameter of mixup and cutmix.", above=0.0
    )
    mixup_portion: float = stage_setting(
        ("mixup", "cutmix"), 1.0, "Share of each batch that mixup/cutmix mix.",
        lower=0.0, upper=1.0,
    )
    synthetic_fraction: float = stage_setting(
        SYNTHETIC_STAGES, 0.5, "Share of each batch drawn from the generator under the gan "
        "stage (or from the other dataset under ood); 0 adds none, 1 leaves no real "
        "examples.", lower=0.0, upper=1.0,
    )
    synthetic_temperature: float | None = stage_setting(
        SYNTHETIC_STAGES, None, "Distillation temperature of synthetic examples (default: "
        "--temperature).", above=0.0,
    )
    noise_std: float = stage_setting(
        ("noise",), 0.1, "Standard deviation of the noise stage.", above=0.0
    )
    mask_rate: float = stage_setting(
        ("token_mask",), 0.15, "Share of a text's tokens the token_mask stage masks.",
        lower=0.0, below=1.0,
    )


def stage_settings(config):
    """`{name: value}` of the `StageSettings` leaves of `config` (a `StageSettings`)."""
    return {field.name: getattr(config, field.name)
            for field in dataclasses.fields(StageSettings)}


@dataclasses.dataclass(frozen=True)
class Policy(StageSettings):
    """How the distillation set is built from a training split.

    Build one with `Policy.parse("crop_flip+mixup", mixup_alpha=1.0)`; a
    policy that exists is valid (its stages registered and composable, its
    settings in their bounds).

    Attributes:
        stages: stage names, in order (see the module docstring).
        flip: whether `crop_flip` flips images horizontally.
        (and every `StageSettings` field)
    """

    stages: tuple = setting(("identity",), "Stage names, in order.")
    flip: bool = stage_setting(("crop_flip",), True, "Whether crop_flip flips horizontally.")

    @classmethod
    def parse(cls, spec, **options):
        """A validated policy from a spec such as `"crop_flip+mixup"`.

        >>> Policy.parse("crop_flip+mixup", flip=False).stages
        ('crop_flip', 'mixup')
        """
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(
                f"A policy is a '+'-separated list of stages among {list(STAGES)}; "
                f"got {spec!r}."
            )
        stages = tuple(part.strip() for part in spec.split("+"))
        return cls(stages=stages, **options)

    def check(self):
        self._validate_stages()

    @property
    def name(self):
        """The policy as a spec string (`"crop_flip+mixup"`)."""
        return "+".join(self.stages)

    @property
    def stochastic(self):
        """Whether batches differ from draw to draw (all but `identity`)."""
        return self.stages != ("identity",)

    @property
    def mixes_labels(self):
        """Whether labels become distributions (`mixup`, `cutmix`)."""
        return any(STAGES[stage].mixes_labels for stage in self.stages if stage in STAGES)

    @property
    def uses_synthetic(self):
        """Whether batches include examples of another source (`gan`, `ood`)."""
        return self.synthetic_stage is not None

    @property
    def synthetic_stage(self):
        """`"gan"` (generator samples), `"ood"` (another dataset's inputs) or `None`."""
        return next((stage for stage in self.stages if stage in SYNTHETIC_STAGES), None)

    def validate(self, input_shape=None, kind=None):
        """Raises a ValueError naming the first stage that is not registered,
        not composable, or does not fit these inputs (the settings were
        checked when the policy was built).

        Args:
            input_shape: the per-example input shape, to check that the
                stages apply to it (images, and RGB where a stage needs it).
            kind: what the inputs are (`keras_kd.data.DatasetInfo.kind`);
                by default, what their shape says (see `input_kind`).
        """
        self._validate_stages()
        if input_shape is not None:
            self._validate_input_shape(tuple(input_shape), kind)

    def _validate_stages(self):
        unknown = [stage for stage in self.stages if stage not in STAGES]
        if unknown:
            raise ValueError(
                f"Unknown policy stage(s) {unknown} in {self.name!r}; expected "
                f"stages among {list(STAGES)}, joined with '+'."
            )
        repeated = sorted({stage for stage in self.stages if self.stages.count(stage) > 1})
        if repeated:
            raise ValueError(f"Policy {self.name!r} repeats stage(s) {repeated}.")
        sources = [stage for stage in self.stages if stage in SYNTHETIC_STAGES]
        if len(sources) > 1:
            raise ValueError(
                f"Policy {self.name!r}: one source of extra inputs per policy; got {sources}."
            )
        if "identity" in self.stages and len(self.stages) > 1:
            raise ValueError(
                f"Policy {self.name!r}: 'identity' stands alone; drop it from a "
                "composed policy."
            )

    def _validate_input_shape(self, input_shape, kind=None):
        kind = kind or input_kind(input_shape)
        for stage in self.stages:
            if kind not in STAGES[stage].inputs:
                raise ValueError(
                    f"Policy {self.name!r}: stage {stage!r} applies to "
                    f"{' or '.join(STAGES[stage].inputs)}; the inputs are {kind} of shape "
                    f"{input_shape}."
                )
        rgb_only = [stage for stage in self.stages if STAGES[stage].needs_rgb]
        if rgb_only and input_shape[-1] != 3:
            raise ValueError(
                f"Policy {self.name!r}: stages {rgb_only} need RGB images (3 "
                f"channels); the inputs have shape {input_shape}."
            )

    def augmentation(self, input_shape, kind=None):
        """The batch stages (see `keras_kd.data.augment`) for this input shape
        (and kind, as `validate` takes it).

        `gan` is not among them: synthetic examples are added by
        `distillation_set`.
        """
        self.validate(input_shape, kind)
        return [
            transform for name in self.stages
            for transform in STAGES[name].build(self, tuple(input_shape))
        ]

    @staticmethod
    def crop_padding(input_shape):
        """The zero-padding of `crop_flip` for images of this shape."""
        return augment.crop_padding(min(input_shape[0], input_shape[1]))

    @staticmethod
    def shift_padding(input_shape):
        """The largest shift of `shift` for signals of this shape."""
        return augment.crop_padding(input_shape[0])

    def describe(self, input_shape=None):
        """The policy as a JSON-ready dict, for reports (settings in use only)."""
        description = {"policy": self.name}
        for field in dataclasses.fields(self):
            if set(field.metadata.get("stages", ())) & set(self.stages):
                value = getattr(self, field.name)
                description[field.name] = value if value is None or isinstance(value, bool) \
                    else float(value)
        for stage in self.stages:
            if STAGES[stage].details is not None and input_shape is not None:
                description.update(STAGES[stage].details(self, tuple(input_shape)))
        return description
