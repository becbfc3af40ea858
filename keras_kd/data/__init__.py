"""Datasets by name and the `tf.data` pipelines built from them."""

from keras_kd.data.datasets import load
from keras_kd.data.datasets import load_texts
from keras_kd.data.epochs import batched
from keras_kd.data.names import check_name
from keras_kd.data.names import default_ood_dataset
from keras_kd.data.splits import TOKENS
from keras_kd.data.splits import DatasetError
from keras_kd.data.splits import DatasetInfo
from keras_kd.data.splits import Splits
from keras_kd.data.splits import input_kind
from keras_kd.data import text
from keras_kd.data import epochs
from keras_kd.data.distillation_set import check_cache_request
from keras_kd.data.distillation_set import distillation_set
from keras_kd.data.policy import STAGES
from keras_kd.data.policy import Policy
from keras_kd.data.policy import Stage
from keras_kd.data.policy import StageSettings
from keras_kd.data.policy import stage_settings
from keras_kd.data.policy import register_stage
from keras_kd.data.policy import default_flip
from keras_kd.data.teacher_cache import MODES as CACHE_MODES
from keras_kd.data.synthetic import SyntheticSource
from keras_kd.data.epochs import steps_per_epoch

__all__ = [
    "CACHE_MODES",
    "STAGES",
    "TOKENS",
    "DatasetError",
    "DatasetInfo",
    "Policy",
    "Splits",
    "Stage",
    "StageSettings",
    "SyntheticSource",
    "batched",
    "check_cache_request",
    "check_name",
    "default_ood_dataset",
    "default_flip",
    "distillation_set",
    "epochs",
    "input_kind",
    "load",
    "load_texts",
    "register_stage",
    "stage_settings",
    "steps_per_epoch",
    "text",
]
