"""GAN-synthesized distillation data: networks, the `GAN` model, sample quality.

The job that trains and rates a GAN is `keras_kd.jobs.gan`.
"""

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
    "make_discriminator",
    "make_generator",
    "penultimate_features",
    "upsampling_steps",
]
