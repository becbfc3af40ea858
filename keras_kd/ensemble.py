"""An ensemble teacher: the mean of its members' predictive distributions."""

import os

import keras
from keras import ops

from keras_kd import export
from keras_kd import models


def ensemble_logits(member_logits):
    """`log(mean_k softmax(member_logits[k]))`, stably, for `[K, batch, classes]`.

    Example:

    >>> logits = np.log(np.array([[[0.2, 0.8]], [[0.6, 0.4]]]))
    >>> print(np.exp(ensemble_logits(logits)).round(3))
    [[0.4 0.6]]
    """
    log_probs = ops.log_softmax(ops.cast(member_logits, "float32"), axis=-1)
    num_members = ops.cast(ops.shape(log_probs)[0], "float32")
    return ops.logsumexp(log_probs, axis=0) - ops.log(num_members)


def _single_output(outputs):
    # SavedModels made elsewhere return a dict from `serving_default`.
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ValueError(
                f"An ensemble member must return one logits tensor; got a dict "
                f"with keys {sorted(outputs)}."
            )
        (outputs,) = outputs.values()
    return outputs


@keras.saving.register_keras_serializable(package="keras_kd")
class Ensemble(keras.Model):
    """A teacher that averages its members' class probabilities.

    Its output is `log(mean_k softmax(member_k(x)))`: normalized log
    probabilities, which are valid logits, so an ensemble plugs in wherever a
    single model does.

    Args:
        members: Keras models, paths of `.keras` files, or SavedModel folders.

    Example:

    >>> members = [keras_kd.models.get("mlp", (8, 8, 1), 10) for _ in range(3)]
    >>> teacher = keras_kd.Ensemble(members)
    >>> teacher(np.zeros((2, 8, 8, 1))).shape
    TensorShape([2, 10])
    """

    def __init__(self, members, **kwargs):
        super().__init__(**kwargs)
        if isinstance(members, (str, os.PathLike)) or not members:
            raise ValueError(
                f"An Ensemble needs a non-empty list of members; got {members!r}."
            )
        self.members = [
            export.load_model(m) if isinstance(m, (str, os.PathLike)) else m
            for m in members
        ]
        counts = {models.num_classes(m) for m in self.members} - {None}
        if len(counts) > 1:
            raise ValueError(
                f"Ensemble members must predict the same classes; their class "
                f"counts are {sorted(counts)}."
            )
        self._num_classes = counts.pop() if counts else None
        if all(member.built for member in self.members):
            self.built = True

    @property
    def output_shape(self):
        """`(None, classes)` when the members' class count is known."""
        if self._num_classes is None:
            raise AttributeError("The members' class count is not known statically.")
        return (None, self._num_classes)

    def call(self, inputs, training=False):
        member_logits = [
            _single_output(member(inputs, training=training))
            for member in self.members
        ]
        return ensemble_logits(ops.stack(member_logits, axis=0))

    def features_and_logits(self, name=None):
        """A model from inputs to `(features, logits)`: the members'
        penultimate features side by side, and the ensemble's logits (see
        `keras_kd.models.features_and_logits`)."""
        parts = [models.features_and_logits(member, f"member{k}_features")
                 for k, member in enumerate(self.members)]
        inputs = keras.Input(parts[0].inputs[0].shape[1:], dtype=parts[0].inputs[0].dtype)
        outputs = [part(inputs) for part in parts]
        features = [feature for feature, _ in outputs]
        features = keras.layers.Concatenate()(features) if len(features) > 1 else features[0]
        logits = ensemble_logits(ops.stack([logit for _, logit in outputs], axis=0))
        return keras.Model(inputs, [features, logits], name=name or f"{self.name}_features")

    def get_config(self):
        config = super().get_config()
        config["members"] = [
            keras.saving.serialize_keras_object(m) for m in self.members
        ]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [
            keras.saving.deserialize_keras_object(m) for m in config["members"]
        ]
        return cls(**config)
