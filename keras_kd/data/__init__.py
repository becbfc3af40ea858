"""Datasets by name and the `tf.data` pipelines built from them."""

from keras_kd.data.datasets import DatasetInfo
from keras_kd.data.datasets import Splits
from keras_kd.data.datasets import batched
from keras_kd.data.datasets import load

__all__ = ["DatasetInfo", "Splits", "batched", "load"]
