"""Sample quality of a generator, measured with a classifier we already have.

`frechet_distance` compares two feature sets by their Gaussian statistics:
`|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^(1/2))`. Fed the teacher's
penultimate-layer features of real and generated images, it is a Fréchet
distance in the teacher's feature space — FID's formula, but not FID, which
uses an Inception network's features. `class_histogram` counts the teacher's
predicted classes on samples; mode collapse shows up as a spike.
"""

import numpy as np

from keras_kd import models


def frechet_distance(features_a, features_b):
    """The Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        features_a, features_b: arrays `[examples, features]`, at least two
            examples each.

    Example:

    >>> a = np.random.default_rng(0).normal(size=(500, 4))
    >>> round(frechet_distance(a, a), 6), frechet_distance(a, a + 1.0) > 3.9
    (0.0, True)
    """
    a, b = (np.asarray(f, dtype="float64") for f in (features_a, features_b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            "frechet_distance needs two arrays [examples >= 2, features] with the "
            f"same feature count; got shapes {a.shape} and {b.shape}."
        )
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = (np.atleast_2d(np.cov(f, rowvar=False)) for f in (a, b))
    # tr((C_a C_b)^(1/2)) = tr((C_a^(1/2) C_b C_a^(1/2))^(1/2)), a symmetric PSD root.
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def _psd_sqrt(matrix):
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def penultimate_features(classifier, images, batch_size=256):
    """The classifier's penultimate-layer features of `images`, `[examples, d]`.

    For an `Ensemble`, the members' features side by side (see
    `keras_kd.models.penultimate`).
    """
    extractor = models.penultimate(classifier)
    output = extractor.predict(np.asarray(images), batch_size=batch_size, verbose=0)
    return output.reshape(len(output), -1)


def class_histogram(classifier, images, num_classes, batch_size=256):
    """How many of `images` the classifier assigns to each class (a list)."""
    logits = classifier.predict(np.asarray(images), batch_size=batch_size, verbose=0)
    return np.bincount(logits.argmax(axis=-1), minlength=num_classes).tolist()
