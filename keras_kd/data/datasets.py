"""Dataset loaders: `digits`, `mnist1d[:settings]`, `tfds:<name>` and `npz:<path>`.

Every dataset comes back as a `keras_kd.data.splits.Splits`: unbatched
`tf.data` splits of `(x, y)` pairs, `x` float32 (images scaled to [0, 1]) and
`y` int32 class ids, plus a `DatasetInfo` with its class count and input
shape; the rank of the input shape says what an example is
(`DatasetInfo.kind`). Names are checked by `keras_kd.data.names`.
A text dataset (a TFDS dataset whose input is text, or an npz file of
strings) comes back as int32 token ids `(sequence_length,)`, of kind
`"tokens"`; see `keras_kd.data.text` for its settings.
"""

import os

import numpy as np
import tensorflow as tf

from keras_kd.data import mnist1d
from keras_kd.data import text as text_lib
from keras_kd.data.names import check_name
from keras_kd.data.splits import KINDS
from keras_kd.data.splits import DatasetError
from keras_kd.data.splits import DatasetInfo
from keras_kd.data.splits import Splits

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
def load(name, data_dir=None, test_fraction=0.25):
    """Loads a dataset by name.

    Args:
        name: `"digits"` (scikit-learn's bundled 8x8 digits: 1,797 images, a
            fixed stratified split, no download), `"mnist1d"` (MNIST-1D
            signals of shape `(40, 1)`, generated from a seed; settings in the
            name, e.g. `"mnist1d:num_train=1000"`, see
            `keras_kd.data.mnist1d`), `"tfds:<name>"` (a TFDS
            image-classification dataset with `train` and `test` splits) or
            `"npz:<path>"` (a `.npz` file with arrays `x_train`, `y_train`,
            `x_test`, `y_test`, and optionally `num_classes` and `kind`:
            `x` of shape `[n, d]` is read as feature vectors, `[n]` as one
            feature, `[n, h, w]` and `[n, h, w, c]` as images; with
            `kind="signals"`, `[n, length]` and `[n, length, channels]` are
            signals; string arrays `x` are texts; integer inputs all in
            [0, 255], in every split, are 8-bit values divided by 255, whatever
            their integer dtype, and other numbers are read as they are).
            A text dataset's name may end in its settings,
            `:vocabulary_size=<n>,sequence_length=<n>` (`keras_kd.data.text`).
        data_dir: where TFDS keeps its data (TFDS' default when `None`), and
            generated MNIST-1D (default `~/.keras/datasets/mnist1d`).
        test_fraction: the test share of the `digits` split.

    Returns:
        A `Splits`.

    Example:

    >>> data = keras_kd.data.load("digits")
    >>> data.info.num_classes, data.info.input_shape
    (10, (8, 8, 1))
    """
    check_name(name)
    if name == "digits":
        return _load_digits(test_fraction)
    if mnist1d.is_name(name):
        return _load_mnist1d(name, data_dir)
    base, settings = text_lib.split_name(name)
    if base.startswith("tfds:"):
        return _load_tfds(name, base[5:], data_dir, settings)
    return _load_npz(name, base[4:], settings)


def load_texts(x_train, y_train, x_test, y_test, vocabulary_size=None, sequence_length=None,
               num_classes=None, name="texts"):
    """A text dataset from texts and labels in memory, read as token ids.

    The vocabulary is adapted on `x_train` alone; settings left `None` take
    `keras_kd.data.text.DEFAULT_SETTINGS`.

    Returns:
        A `Splits` of int32 token ids `(sequence_length,)`, its `vocabulary`
        and `vectorizer()` to read raw strings.

    Example:

    >>> data = keras_kd.data.load_texts(["a good film", "a bad film"], [1, 0],
    ...                                 ["good", "bad"], [1, 0], sequence_length=4)
    >>> data.info.kind, data.info.input_shape, data.vocabulary
    ('tokens', (4,), ('', '[UNK]', 'film', 'a', 'good', 'bad'))
    """
    settings = {key: value for key, value in (("vocabulary_size", vocabulary_size),
                                              ("sequence_length", sequence_length))
                if value is not None}
    text = ",".join(f"{key}={value}" for key, value in settings.items()) or None
    return _from_texts(name, text, x_train, y_train, x_test, y_test, num_classes)


def _load_digits(test_fraction):
    from sklearn import datasets as sk_datasets
    from sklearn import model_selection

    digits = sk_datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images,
        digits.target.astype("int32"),
        test_size=test_fraction,
        stratify=digits.target,
        random_state=0,
    )
    return _from_arrays("digits", x_train, y_train, x_test, y_test, num_classes=10)


def _load_mnist1d(name, data_dir):
    settings = mnist1d.parse_name(name)
    cache_dir = os.path.join(data_dir, "mnist1d") if data_dir else mnist1d.default_cache_dir()
    x_train, y_train, x_test, y_test = mnist1d.generate(settings, cache_dir)
    return _from_arrays(mnist1d.canonical_name(settings), x_train, y_train, x_test, y_test,
                        num_classes=10, kind="signals", settings=settings)


def _load_npz(name, path, text_settings=None):
    if not os.path.isfile(path):
        raise DatasetError(f"Dataset {name!r}: no file at {path!r}.")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in _NPZ_KEYS if key not in arrays]
            if missing:
                raise DatasetError(
                    f"Dataset {name!r}: {path!r} lacks arrays {missing}; expected "
                    f"{list(_NPZ_KEYS)}."
                )
            x_train, y_train, x_test, y_test = (
                _npz_array(name, path, arrays, key) for key in _NPZ_KEYS)
            num_classes = int(arrays["num_classes"]) if "num_classes" in arrays else None
            kind = str(arrays["kind"]) if "kind" in arrays else None
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError) as error:
        raise _unreadable_npz(name, path, error) from None
    base = text_lib.split_name(name)[0]
    if text_lib.is_text(x_train) or text_lib.is_text(x_test):
        return _from_texts(base, text_settings, x_train, y_train, x_test, y_test, num_classes)
    _refuse_text_settings(name, text_settings)
    return _from_arrays(name, x_train, y_train, x_test, y_test, num_classes, kind)


def _npz_array(name, path, arrays, key):
    try:
        return arrays[key]
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        raise DatasetError(
            f"Dataset {name!r}: {key} in {path!r} is an object array (what pandas' "
            "to_numpy() gives for strings), which NumPy reads only by unpickling, and a data "
            "file is not trusted to run code; save it as a string array: "
            f"np.savez(..., {key}=np.asarray(texts, dtype=str))."
        ) from None


def _unreadable_npz(name, path, error):
    return DatasetError(
        f"Dataset {name!r}: {path!r} ({os.path.getsize(path)} bytes) is not a readable NumPy "
        f".npz archive of arrays {list(_NPZ_KEYS)} ({type(error).__name__}: {error})."
    )


def _refuse_text_settings(name, text_settings):
    if text_settings is not None:
        raise DatasetError(
            f"Dataset {name!r}: settings {text_settings!r} apply to text datasets only; "
            "its inputs are not text."
        )


def _from_texts(base, text_settings, x_train, y_train, x_test, y_test, num_classes=None):
    """Token-id splits of a text dataset; the vocabulary adapted on `x_train`."""
    try:
        settings = text_lib.parse_settings(base, text_settings)
    except ValueError as error:
        raise DatasetError(str(error)) from None
    name = text_lib.canonical_name(base, settings)
    texts, labels = {}, {}
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        # Elements are checked before NumPy would turn a None or a number into text.
        if not isinstance(x, np.ndarray):
            x = np.asarray(list(x), dtype=object)
        if x.ndim != 1 or not text_lib.is_text(x):
            raise DatasetError(
                f"Dataset {name!r}: x_{split} must be a vector of texts (strings); got "
                f"shape {x.shape}, dtype {x.dtype}."
            )
        texts[split] = _decoded_texts(name, split, x)
        # The labels are checked as any dataset's are, against placeholder inputs.
        _, labels[split] = _validate_split(name, split, np.zeros((len(x), 1), "float32"),
                                           np.asarray(y))
    length = settings["sequence_length"]
    _check_token_memory(name, len(texts["train"]) + len(texts["test"]), length)
    vocabulary = text_lib.adapt_vocabulary(texts["train"], settings["vocabulary_size"])
    if len(vocabulary) <= 2:
        raise DatasetError(
            f"Dataset {name!r}: x_train holds no words: its {len(texts['train'])} texts are "
            "empty once lowercased and stripped of punctuation; expected texts with words."
        )
    arrays = {split: text_lib.token_ids(texts[split], vocabulary, length) for split in texts}
    y_train, y_test = labels["train"], labels["test"]
    info = DatasetInfo(
        name=name, num_classes=_class_count(name, y_train, y_test, num_classes),
        input_shape=(length,), num_train=len(y_train), num_test=len(y_test),
        settings=settings, vocabulary_size=len(vocabulary),
    )
    return Splits(
        train=tf.data.Dataset.from_tensor_slices((arrays["train"], y_train)),
        test=tf.data.Dataset.from_tensor_slices((arrays["test"], y_test)),
        info=info, vocabulary=vocabulary,
    )


def _decoded_texts(name, split, texts):
    """The texts of a split as `str`, each checked: bytes must be UTF-8."""
    decoded = []
    for index, text in enumerate(texts):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DatasetError(
                    f"Dataset {name!r}: x_{split}[{index}] is not UTF-8 text ({error.reason} "
                    f"at byte {error.start}: {text[max(error.start - 8, 0):error.end + 8]!r}); "
                    "expected UTF-8 encoded strings."
                ) from None
        elif not isinstance(text, str):
            raise DatasetError(
                f"Dataset {name!r}: x_{split}[{index}] is {text!r} "
                f"({type(text).__name__}); expected a string (use '' for an empty text)."
            )
        decoded.append(text)
    return decoded


def _check_token_memory(name, examples, sequence_length):
    """Refuses token arrays that would not fit in half of this machine's memory."""
    needed = examples * sequence_length * 4
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available // 2:
        raise DatasetError(
            f"Dataset {name!r}: sequence_length={sequence_length} makes token ids of "
            f"{needed / 2**30:.1f} GiB for {examples} texts, over half of this machine's "
            f"{available / 2**30:.1f} GiB; choose a shorter sequence_length."
        )


def _from_arrays(name, x_train, y_train, x_test, y_test, num_classes=None, kind=None,
                 settings=None):
    if kind not in (None, *KINDS.values()):
        raise DatasetError(
            f"Dataset {name!r}: kind must be one of {list(KINDS.values())}; got {kind!r}."
        )
    x_train, y_train = _validate_split(name, "train", x_train, y_train, kind)
    x_test, y_test = _validate_split(name, "test", x_test, y_test, kind)
    x_train, x_test = _as_float(x_train, x_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"Dataset {name!r}: train inputs have shape {x_train.shape[1:]} but "
            f"test inputs {x_test.shape[1:]}; they must match."
        )
    num_classes = _class_count(name, y_train, y_test, num_classes)
    info = DatasetInfo(
        name=name,
        num_classes=num_classes,
        input_shape=tuple(x_train.shape[1:]),
        num_train=len(x_train),
        num_test=len(x_test),
        settings=dict(settings or {}),
    )
    return Splits(
        train=tf.data.Dataset.from_tensor_slices((x_train, y_train)),
        test=tf.data.Dataset.from_tensor_slices((x_test, y_test)),
        info=info,
    )


def _as_float(*inputs):
    """The inputs as float32; integers all in [0, 255] are 8-bit values (pixels)
    and are divided by 255, whatever their integer dtype (a uint8 image and the
    same image as int64 read alike). The rule looks at every split together,
    so train and test are always scaled alike."""
    integer = all(np.issubdtype(x.dtype, np.integer) for x in inputs)
    eight_bit = integer and all(x.size == 0 or (x.min() >= 0 and x.max() <= 255)
                                for x in inputs)
    return tuple(x.astype("float32") / 255.0 if eight_bit else x.astype("float32")
                 for x in inputs)


def _class_count(name, y_train, y_test, num_classes):
    """The class count: `num_classes`, or the labels', when they leave no doubt."""
    largest = int(max(y_train.max(), y_test.max()))
    count = num_classes if num_classes is not None else largest + 1
    if count < 2:
        raise DatasetError(
            f"Dataset {name!r}: a classifier needs at least 2 classes; "
            + (f"num_classes is {num_classes}." if num_classes is not None else
               f"every label is {largest}.")
        )
    if num_classes is not None:
        if largest >= num_classes:
            raise DatasetError(
                f"Dataset {name!r}: labels must be in [0, {num_classes}); found {largest}."
            )
        return num_classes
    seen = np.unique(y_train)
    if len(seen) != largest + 1:
        # A stray label (100000, say) would silently build a 100001-class model.
        raise DatasetError(
            f"Dataset {name!r}: the labels go up to {largest}, but training has only "
            f"{len(seen)} distinct classes (first missing: "
            f"{int(np.setdiff1d(np.arange(largest + 1), seen)[0])}). Fix the labels, or "
            "give the class count (an npz array num_classes) if those classes are meant "
            "to be absent from training."
        )
    return largest + 1


def _validate_split(name, split, x, y, kind=None):
    ranks = {"signals": (2, 3), "features": (1, 2), "images": (3, 4)}.get(kind, (1, 2, 3, 4))
    if x.ndim not in ranks:
        expected = {
            "signals": "rank 2 ([examples, length]) or 3 ([examples, length, channels])",
            "features": "rank 1 (one feature) or 2 ([examples, features])",
        }.get(kind, "rank 1 (one feature), 2 (feature vectors), 3 (grayscale images) or "
                    "4 (images with channels)")
        raise DatasetError(
            f"Dataset {name!r}: x_{split} must have {expected}"
            + (f" for kind={kind!r}" if kind else "") + f"; got shape {x.shape}."
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(
            f"Dataset {name!r}: y_{split} must be a vector of class ids; got "
            f"shape {y.shape}."
        )
    if len(x) != len(y):
        raise DatasetError(
            f"Dataset {name!r}: x_{split} has {len(x)} examples but y_{split} "
            f"has {len(y)}."
        )
    if len(y) == 0:
        raise DatasetError(f"Dataset {name!r}: the {split} split is empty.")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(
            f"Dataset {name!r}: y_{split} must hold integer class ids; got "
            f"dtype {y.dtype}."
        )
    if y.min() < 0:
        raise DatasetError(
            f"Dataset {name!r}: labels must be non-negative; y_{split} holds {y.min()}."
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DatasetError(f"Dataset {name!r}: x_{split} must be real numbers; got "
                           f"dtype {x.dtype}.")
    if np.issubdtype(x.dtype, np.floating):
        bad = np.size(x) - int(np.count_nonzero(np.isfinite(x)))
        if bad:
            first = int(np.argwhere(~np.isfinite(x))[0][0])
            raise DatasetError(
                f"Dataset {name!r}: x_{split} holds {bad} NaN or infinite values "
                f"(the first in example {first}); training on them would diverge."
            )
    if x.ndim == 1 or (x.ndim == 2 and kind == "signals") or (x.ndim == 3 and kind != "signals"):
        x = x[..., None]  # one feature; one channel
    return x, y.astype("int32")


def _load_tfds(name, tfds_name, data_dir, text_settings=None):
    import tensorflow_datasets as tfds

    info = tfds.builder(tfds_name, data_dir=data_dir).info
    if info.supervised_keys is None:
        raise ValueError(
            f"Dataset {name!r} has no (input, label) supervised keys; expected "
            "an image- or text-classification dataset."
        )
    missing = [split for split in ("train", "test") if split not in info.splits]
    if info.splits and missing:
        raise ValueError(
            f"Dataset {name!r} has no {missing} split; it has {sorted(info.splits)}."
        )
    train, test = tfds.load(
        tfds_name, split=["train", "test"], as_supervised=True, data_dir=data_dir
    )
    input_key, label_key = info.supervised_keys
    num_classes = info.features[label_key].num_classes
    if isinstance(info.features[input_key], tfds.features.Text):
        (x_train, y_train), (x_test, y_test) = (_strings_and_labels(split)
                                                for split in (train, test))
        return _from_texts(text_lib.split_name(name)[0], text_settings, x_train, y_train,
                           x_test, y_test, num_classes)
    _refuse_text_settings(name, text_settings)
    dataset_info = DatasetInfo(
        name=name,
        num_classes=num_classes,
        input_shape=tuple(info.features[input_key].shape),
        num_train=_num_examples(info, "train", train),
        num_test=_num_examples(info, "test", test),
    )
    return Splits(
        train=train.map(_scale_image, num_parallel_calls=tf.data.AUTOTUNE),
        test=test.map(_scale_image, num_parallel_calls=tf.data.AUTOTUNE),
        info=dataset_info,
    )


def _strings_and_labels(split):
    """A TFDS split of `(text, label)` pairs as a string array and a label array."""
    texts, labels = [], []
    for x, y in split.batch(4096).as_numpy_iterator():
        texts.extend(x)
        labels.extend(y)
    return np.asarray(texts, dtype=object), np.asarray(labels, dtype="int64")


def _num_examples(info, split, dataset):
    if split in info.splits:
        return info.splits[split].num_examples
    return int(dataset.cardinality())


def _scale_image(image, label):
    if image.dtype == tf.uint8:
        image = tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32), tf.cast(label, tf.int32)
