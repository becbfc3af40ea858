"""Saving, exporting and loading models, with writes that are never partial.

Every write goes to a temporary path beside the destination and is renamed
into place when complete, so a killed process never leaves a file or folder
that looks finished.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile
import time

import keras

from keras_kd import processes

_STAGING = ".staging-"
# A staging folder's name: its writer's host and process id, then mkdtemp's suffix.
_STAGING_NAME = re.compile(r"^\.staging-(?P<host>.+)-(?P<pid>\d+)-[^-]+$")
# Staging folders named before they named their writer are removed after this.
_UNNAMED_STAGING_AGE_S = 3600.0


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path that replaces `path` when the block succeeds.

    The temporary path lies in a staging folder beside `path`, named by the
    writing process; a killed writer's staging folders are removed by the
    next write into the same folder.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(parent)
    staging = tempfile.mkdtemp(
        prefix=f"{_STAGING}{processes.this_host()}-{os.getpid()}-", dir=parent)
    try:
        staged = os.path.join(staging, "artifact" + suffix)
        yield staged
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(folder):
    """Removes the staging folders in `folder` whose writer has ended (a killed
    export, say); those of running writers, or of writers on other hosts, stay."""
    try:
        names = [name for name in os.listdir(folder) if name.startswith(_STAGING)]
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        match = _STAGING_NAME.match(name)
        if match:
            stale = processes.has_ended(match.group("host"), match.group("pid"))
        else:
            try:
                stale = time.time() - os.path.getmtime(path) > _UNNAMED_STAGING_AGE_S
            except OSError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)


def write_text(text, path):
    """Writes `text` to `path`, atomically."""
    with atomic_path(path) as staged:
        with open(staged, "w") as f:
            f.write(text)
    return path


def write_json(value, path):
    """Writes `value` as indented JSON to `path`, atomically."""
    return write_text(json.dumps(value, indent=2, sort_keys=False) + "\n", path)


def save_keras(model, path):
    """Saves `model` as a `.keras` file at `path`, atomically."""
    if not str(path).endswith(".keras"):
        raise ValueError(f"A Keras model file must end in '.keras'; got {path!r}.")
    with atomic_path(path, suffix=".keras") as staged:
        model.save(staged)
    return path


def export_saved_model(model, path):
    """Exports `model`'s inference function as a TF SavedModel, atomically.

    The result loads with `tf.saved_model.load(path)` alone and serves under
    the `serve` endpoint and the `serving_default` signature.
    """
    with atomic_path(path) as staged:
        model.export(staged, format="tf_saved_model", verbose=False)
    return path


def export_student(model, directory, vectorizer=None):
    """Writes a student as `<directory>/saved_model` and `<directory>/student.keras`.

    A `keras_kd.Distiller` is exported as its student. With a `vectorizer`
    (a text dataset's, `keras_kd.data.Splits.vectorizer()`), the SavedModel
    reads raw text: it takes a batch of strings and returns logits, the
    vectorization inside it (`reads_text`); the `.keras` file keeps the
    student on token ids, as it was trained.

    Returns:
        A dict with the paths written, under `saved_model` and `keras`.
    """
    model = getattr(model, "student", model)
    served = reads_text(model, vectorizer) if vectorizer is not None else model
    return {
        "saved_model": export_saved_model(served, os.path.join(directory, "saved_model")),
        "keras": save_keras(model, os.path.join(directory, "student.keras")),
    }


def reads_text(model, vectorizer):
    """`model` behind `vectorizer`: a model from a batch of strings to `model`'s logits.

    Example:

    >>> data = keras_kd.data.load_texts(
    ...     ["a good film", "a bad film"], [1, 0], ["good", "bad"], [1, 0], sequence_length=4)
    >>> student = keras_kd.models.for_data("lstm", data.info, units=4, embedding_dim=4)
    >>> reads_text(student, data.vectorizer())(np.array(["good film"])).shape
    TensorShape([1, 2])
    """
    texts = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(texts, model(vectorizer(texts)), name=f"{model.name}_on_text")


def reads_strings(path):
    """Whether the SavedModel at `path` takes strings (a text run's student,
    its vectorizer inside: see `export_student`)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    endpoint = _serving_endpoint(path, loaded)
    function = getattr(loaded, "serve") if endpoint == "serve" else loaded.signatures[endpoint]
    signature = getattr(function, "input_signature", None) or function.structured_input_signature
    return any(spec.dtype == tf.string for spec in tf.nest.flatten(signature))


def is_saved_model(path):
    """Whether `path` is a TensorFlow SavedModel directory."""
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def load_model(path):
    """Loads a model for inference from a `.keras` file or a SavedModel folder.

    A SavedModel comes back as a `keras.layers.TFSMLayer` calling its `serve`
    endpoint (or `serving_default`, for SavedModels made elsewhere).
    """
    path = os.fspath(path)
    if path.endswith(".keras"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No Keras model file at {path!r}.")
        return keras.saving.load_model(path, compile=False)
    if is_saved_model(path):
        return keras.layers.TFSMLayer(path, call_endpoint=_serving_endpoint(path))
    raise ValueError(
        f"Cannot load a model from {path!r}: expected a '.keras' file or a "
        "TensorFlow SavedModel folder (one holding saved_model.pb)."
    )


def _serving_endpoint(path, loaded=None):
    import tensorflow as tf

    loaded = loaded if loaded is not None else tf.saved_model.load(path)
    if hasattr(loaded, "serve"):
        return "serve"
    if "serving_default" in loaded.signatures:
        return "serving_default"
    raise ValueError(
        f"The SavedModel at {path!r} has neither a 'serve' endpoint nor a "
        "'serving_default' signature to call."
    )
