"""Dataset names: the forms `keras_kd.data.load` takes, checked before any loading.

`digits`, `mnist1d[:<setting>=<value>,...]`, `tfds:<name>` and `npz:<path>`;
a text dataset's name may end in its settings
(`:vocabulary_size=<n>,sequence_length=<n>`).
"""

from keras_kd.data import mnist1d
from keras_kd.data import text as text_lib
from keras_kd.data.splits import DatasetError


def check_name(name):
    """Raises a `DatasetError` unless `name` has the form `load` takes.

    >>> check_name("tfds:mnist")
    >>> check_name("cifar")
    Traceback (most recent call last):
    ...
    keras_kd.data.splits.DatasetError: Unknown dataset 'cifar'; expected 'digits', 'mnist1d[:<setting>=<value>,...]', 'tfds:<name>' or 'npz:<path>'.
    """
    if name == "digits":
        return
    if mnist1d.is_name(name):
        try:
            mnist1d.parse_name(name)
        except ValueError as error:
            raise DatasetError(str(error)) from None
        return
    for prefix in ("tfds:", "npz:"):
        if isinstance(name, str) and name.startswith(prefix) and len(name) > len(prefix):
            base, settings = text_lib.split_name(name)
            if settings is not None:
                try:
                    text_lib.parse_settings(base, settings)
                except ValueError as error:
                    raise DatasetError(str(error)) from None
            return
    raise DatasetError(
        f"Unknown dataset {name!r}; expected 'digits', 'mnist1d[:<setting>=<value>,...]', "
        "'tfds:<name>' or 'npz:<path>'."
    )


def default_ood_dataset(name):
    """The dataset whose inputs the `ood` stage draws by default for dataset
    `name`: for MNIST-1D, the same settings with shuffled sequences and
    another seed (`keras_kd.data.mnist1d.shuffled_name`); `None` elsewhere.

    >>> default_ood_dataset("mnist1d"), default_ood_dataset("digits")
    ('mnist1d:seed=43,shuffle_seq=true', None)
    """
    return mnist1d.shuffled_name(name) if mnist1d.is_name(name) else None
