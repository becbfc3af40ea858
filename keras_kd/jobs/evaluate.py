"""The evaluate job: re-measure a saved student against its saved teacher."""

import json
import os

import tensorflow as tf

from keras_kd import data as data_lib
from keras_kd import evaluation
from keras_kd import export
from keras_kd.data import text as text_lib
from keras_kd.ensemble import Ensemble

SPLITS = ("train", "test")


def models_of_run(run_dir):
    """`(student path, teacher member paths, dataset)` named by a distill run's report."""
    path = os.path.join(run_dir, "report.json")
    if not os.path.isfile(path):
        raise ValueError(f"run_dir={run_dir!r} has no report.json.")
    with open(path) as f:
        report = json.load(f)
    return report["artifacts"]["keras"], report["artifacts"]["teachers"], \
        report["config"]["dataset"]


def control_of_run(run_dir):
    """The control (independent student) a distill run reported, or `None`."""
    with open(os.path.join(run_dir, "report.json")) as f:
        control = json.load(f).get("control")
    return control["path"] if control else None


def _load_for(data, path):
    """The model at `path`, taking `data`'s inputs: a text run's SavedModel
    reads strings, so its token ids are written back as the words they stand
    for, which its own vectorizer reads as the same ids."""
    model = export.load_model(path)
    if not (data.vocabulary and export.is_saved_model(path) and export.reads_strings(path)):
        return model
    words = tf.constant(text_lib.words_of_ids(data.vocabulary))

    def on_token_ids(ids, training=False):
        texts = tf.strings.reduce_join(tf.gather(words, ids), axis=-1, separator=" ")
        return model(texts, training=training)

    return on_token_ids


def evaluate(student_path, teacher_paths, dataset, splits=SPLITS, batch_size=64,
             data_dir=None, control_path=None):
    """Fidelity of a saved student against its saved teacher members, split by split.

    Args:
        student_path: a `.keras` file or a SavedModel folder.
        teacher_paths: the teacher ensemble's members (files or folders).
        dataset: the dataset's name (see `keras_kd.data.load`).
        splits: among `"train"` and `"test"`.
        batch_size: examples per evaluated batch.
        data_dir: TFDS data folder (and generated MNIST-1D's).
        control_path: an independently trained student (`.keras` or
            SavedModel), to report its agreement, KL, accuracy and NLL
            beside the student's.

    Returns:
        `{split: {metric: value}}`, with `linear_cka` when every model is a
        `.keras` file (a SavedModel has no layers to take features from).

    Raises:
        ValueError: a missing model or an unknown split, before any loading.
    """
    for path in [student_path, *teacher_paths, *([control_path] if control_path else [])]:
        if not os.path.exists(path):
            raise ValueError(f"No model at {path!r}.")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"splits: unknown split(s) {unknown}; expected among {SPLITS}.")
    data = data_lib.load(dataset, data_dir=data_dir)
    available = {"train": data.train, "test": data.test}
    student = _load_for(data, student_path)
    teacher = Ensemble(list(teacher_paths))
    batches = {name: data_lib.batched(available[name], batch_size) for name in splits}
    functional = all(str(path).endswith(".keras") for path in [student_path, *teacher_paths])
    control = _load_for(data, control_path) if control_path else None
    return evaluation.fidelity_report(teacher, student, batches, representation=functional,
                                      control=control)
