"""The jobs: distill, teachers, GAN and evaluate, each run from one typed config.

Every job shares one outline (`keras_kd.jobs.outline.JobRun`: strategy,
folders, resume, backups, timing, clean-up); the `launch/` apps only parse
flags into a config and call a job.

    report = keras_kd.jobs.distill.run(keras_kd.jobs.DistillConfig())
"""

from keras_kd.jobs import distill
from keras_kd.jobs import evaluate
from keras_kd.jobs import folders
from keras_kd.jobs import gan
from keras_kd.jobs import lock
from keras_kd.jobs import outline
from keras_kd.jobs import recipes
from keras_kd.jobs import report
from keras_kd.jobs import teachers
from keras_kd.jobs.configs import Cache
from keras_kd.jobs.configs import Data
from keras_kd.jobs.configs import Distillation
from keras_kd.jobs.configs import DistillationSet
from keras_kd.jobs.configs import DistillConfig
from keras_kd.jobs.configs import GANConfig
from keras_kd.jobs.configs import GANTraining
from keras_kd.jobs.configs import Output
from keras_kd.jobs.configs import Student
from keras_kd.jobs.configs import Teacher
from keras_kd.jobs.configs import TeachersConfig
from keras_kd.jobs.configs import Training
from keras_kd.jobs.outline import ConfigError
from keras_kd.jobs.outline import FolderError

__all__ = [
    "Cache",
    "ConfigError",
    "FolderError",
    "Data",
    "DistillConfig",
    "Distillation",
    "DistillationSet",
    "GANConfig",
    "GANTraining",
    "Output",
    "Student",
    "Teacher",
    "TeachersConfig",
    "Training",
    "distill",
    "evaluate",
    "folders",
    "gan",
    "lock",
    "outline",
    "recipes",
    "report",
    "teachers",
]
