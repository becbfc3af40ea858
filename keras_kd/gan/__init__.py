"""GAN-synthesized distillation data: networks, the `GAN` model, sample quality.

`keras_kd.gan.job` is the train_gan job (`GANConfig`, `run`).
"""

from keras_kd.gan import job
from keras_kd.gan.model import GAN
from keras_kd.gan.networks import make_discriminator
from keras_kd.gan.networks import make_generator
from keras_kd.gan.networks import upsampling_steps
from keras_kd.gan.quality import class_histogram
from keras_kd.gan.quality import frechet_distance
from keras_kd.gan.quality import penultimate_features

__all__ = [
    "GAN",
    "class_histogram",
    "frechet_distance",
    "job",
    "make_discriminator",
    "make_generator",
    "penultimate_features",
    "upsampling_steps",
]
