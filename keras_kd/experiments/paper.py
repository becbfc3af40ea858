"""Numbers a paper states for a sweep's configurations, and ours beside them.

`keras_kd.experiments.results` writes them as a table in `summary.md`.
"""

import dataclasses
import math
import re

# How a stated number relates to the quantity: it is the value, a bound, or about it.
RELATIONS = ("=", "<", ">", "~")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_STATED = re.compile(
    rf"^(?P<relation>[<>~]?)\s*(?P<value>{_NUMBER})\s*(?:\+-\s*(?P<spread>{_NUMBER}))?$")


@dataclasses.dataclass(frozen=True)
class PaperNumber:
    """A number a paper states for the runs of a sweep with some settings.

    Attributes:
        settings: the swept settings of the configurations it is stated for
            (`{"policy": "crop_flip", "temperature": 4.0}`); it sits beside
            every configuration of the sweep with those settings, `{}` beside
            all of them.
        metric: the name of the metric it is a value of (a sweep's row's
            `metrics` key, e.g. `test_agreement`), in its units (agreement
            and accuracy as fractions, KL in nats).
        value: the number.
        spread: the spread the paper gives with it (its standard deviation
            over trials), or `None`.
        relation: `"="` (the value), `"<"` or `">"` (a bound: "below 80%")
            or `"~"` (about: "about 95%").
        source: where the paper states it ("section 5.1", "Table 1").

    Example:

    >>> number = PaperNumber({"temperature": 4.0}, "test_agreement", 0.845,
    ...                      source="section 5.1")
    >>> number.text()
    '0.8450'
    """

    settings: dict
    metric: str
    value: float
    spread: float | None = None
    relation: str = "="
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric.isidentifier():
            raise ValueError(
                f"metric must be a metric's name, like 'test_agreement'; got {self.metric!r}.")
        if self.relation not in RELATIONS:
            raise ValueError(
                f"relation must be one of {RELATIONS}; got {self.relation!r}.")
        for name in ("value", "spread"):
            number = getattr(self, name)
            if number is not None and not math.isfinite(number):
                raise ValueError(
                    f"The paper's {self.metric} {name} must be finite; got {number!r}.")
        if self.spread is not None and (self.spread < 0 or self.relation != "="):
            raise ValueError(
                f"A spread is a non-negative standard deviation of a stated value; got "
                f"{self.spread!r} with relation {self.relation!r}.")

    def matches(self, settings):
        """Whether a configuration with `settings` is one this number is stated for."""
        return all(name in settings and settings[name] == value
                   for name, value in self.settings.items())

    def text(self):
        """The number as the summary writes it, to 4 decimals or the paper's own
        precision: `0.8450`, `0.77174 (0.00352)`, `< 0.8000`."""
        text = _fixed(self.value)
        if self.spread is not None:
            text += f" ({_fixed(self.spread)})"
        if self.relation == "=":
            return text
        return f"{'≈' if self.relation == '~' else self.relation} {text}"


def _fixed(number):
    digits = repr(float(number)).partition(".")[2]
    return f"{number:.{max(4, len(digits)) if digits.isdigit() else 4}f}"


def parse_stated(text):
    """`'metric=value[,metric=value]'` as `[(metric, relation, value, spread)]`.

    A value is a number, `<number` or `>number` (a bound), `~number` (about),
    or `number+-spread`.

    Example:

    >>> parse_stated("test_agreement=0.77174+-0.00352,test_predictive_kl=0.836")
    [('test_agreement', '=', 0.77174, 0.00352), ('test_predictive_kl', '=', 0.836, None)]
    """
    stated = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        metric, equals, value = (part.strip() for part in item.partition("="))
        match = _STATED.match(value)
        if not equals or not metric or match is None:
            raise ValueError(
                f"expected 'metric=value' with a value like 0.845, <0.8, ~0.95 or "
                f"0.772+-0.004; got {item!r}.")
        spread = match["spread"]
        stated.append((metric, match["relation"] or "=", float(match["value"]),
                       None if spread is None else float(spread)))
    if not stated:
        raise ValueError(f"expected at least one 'metric=value'; got {text!r}.")
    return stated


def unmatched(numbers, runs_settings):
    """The numbers that sit beside no configuration of the given runs' settings."""
    return [number for number in numbers
            if not any(number.matches(settings) for settings in runs_settings)]


def paper_comparison(summary, numbers):
    """Each stated number beside the configurations it is stated for.

    Args:
        summary: a sweep's configurations, as `keras_kd.experiments.summarize`
            gives them.
        numbers: `PaperNumber`s.

    Returns:
        A list of dicts, in the order of `numbers`, then of the sweep's
        configurations: `label`, `number` (the `PaperNumber`), `ours`
        (`(mean, std)` over seeds, or `None` where no run measured it),
        `runs`, `reference` (our reference student's `(mean, std)` of the
        same metric, or `None`) and `difference` (our mean less the
        paper's value, or `None`).
    """
    entries = []
    for number in numbers:
        for group in summary:
            if not number.matches(group["settings"]):
                continue
            ours = group["metrics"].get(number.metric)
            entries.append({
                "label": group["label"],
                "number": number,
                "ours": ours,
                "runs": group["runs"],
                "reference": group["metrics"].get(reference_metric(number.metric)),
                "difference": None if ours is None else ours[0] - number.value,
            })
    return entries


def reference_metric(metric):
    """The name of the reference student's value of a student's `metric`.

    Example:

    >>> reference_metric("test_student_accuracy"), reference_metric("train_agreement")
    ('test_reference_accuracy', 'train_reference_agreement')
    """
    split, _, name = metric.partition("_")
    return f"{split}_reference_{name.removeprefix('student_')}"
