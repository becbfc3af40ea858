"""Classifiers by name, all returning logits.

`get(name, input_shape, num_classes)` builds:

- `resnet<depth>`: CIFAR-style ResNets, depth = 6n + 2 (`resnet8`, `resnet20`,
  `resnet56`, ...), stages of 16/32/64 filters; `resnet<depth>_w<k>` has k
  times the filters, and a `_ln` suffix (`resnet8_ln`, `resnet8_w2_ln`)
  normalizes with LayerNorm (over each layer's positions and channels: a
  GroupNorm of one group), which keeps no batch statistics, so a weighted
  mean of two such networks is itself a well-defined network;
- `cnn`: a small VGG-style convolutional network;
- `mlp`: a multilayer perceptron (features, signals or images: any numeric
  input; token ids need a text model);
- `mnist1d_cnn`, `mnist1d_mlp`: the MNIST-1D paper's CNN (signals) and MLP;
- `lstm`, `bilstm`: text classifiers over token ids `(sequence_length,)`
  (embedding, a unidirectional or bidirectional LSTM, a linear head); they
  take `vocabulary_size`, which `for_data` passes from the dataset.

`resnet<depth>` and `cnn` are 2-D on images `(height, width, channels)` and
1-D on signals `(length, channels)`.

Names live in a registry: `register(name, builder, inputs=...)` adds an
architecture of your own, which `get`, the job configs and the apps' flags
then accept; `check_fits` refuses a model on a kind of input it does not
read (an `lstm` on images, an `mlp` on token ids) before anything trains.
"""

from keras_kd.models.introspection import features_and_logits
from keras_kd.models.introspection import input_shape
from keras_kd.models.introspection import num_classes
from keras_kd.models.introspection import penultimate
from keras_kd.models.introspection import softmax_output_layer
from keras_kd.models.registry import check_fits
from keras_kd.models.registry import check_name
from keras_kd.models.registry import for_data
from keras_kd.models.registry import get
from keras_kd.models.registry import inputs_read
from keras_kd.models.registry import names
from keras_kd.models.registry import register
from keras_kd.models.registry import unregister

__all__ = [
    "check_fits",
    "check_name",
    "features_and_logits",
    "for_data",
    "get",
    "input_shape",
    "inputs_read",
    "names",
    "num_classes",
    "penultimate",
    "register",
    "softmax_output_layer",
    "unregister",
]
