"""NumPy references for the quantities keras_kd computes."""

import numpy as np


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def kl(teacher_logits, student_logits, temperature=1.0):
    temperature = np.asarray(temperature, dtype=np.float64)
    if temperature.ndim == 1:
        temperature = temperature[:, None]
    log_p = log_softmax(np.asarray(teacher_logits, np.float64) / temperature)
    log_q = log_softmax(np.asarray(student_logits, np.float64) / temperature)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


def cross_entropy(labels, logits):
    log_q = log_softmax(np.asarray(logits, np.float64))
    return -log_q[np.arange(len(labels)), labels]


def ece(labels, logits, num_bins, weights=None):
    probs = np.exp(log_softmax(np.asarray(logits, np.float64)))
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    weights = np.ones_like(confidence) if weights is None else np.asarray(weights, np.float64)
    total = 0.0
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        w = weights[in_bin].sum()
        if w > 0:
            accuracy = (weights[in_bin] * correct[in_bin]).sum() / w
            mean_confidence = (weights[in_bin] * confidence[in_bin]).sum() / w
            total += w * abs(accuracy - mean_confidence)
    return total / weights.sum()


def nll(labels, logits, weights=None):
    """Mean negative log-likelihood of labels (ids or distributions), in nats."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == np.shape(logits)[1]:
        per_example = -(labels * log_softmax(np.asarray(logits, np.float64))).sum(axis=-1)
    else:
        per_example = cross_entropy(labels.reshape(-1), logits)
    weights = np.ones(len(per_example)) if weights is None else np.asarray(weights, np.float64)
    return float((weights * per_example).sum() / weights.sum())
