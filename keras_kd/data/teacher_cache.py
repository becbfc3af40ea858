"""Teacher-output caches: the teacher's logits computed once, not every step.

Two kinds, both kept in memory or on disk:

- static logits: one row of logits per example of a split, in the split's
  order (for a static policy such as `identity`);
- cached views: `N` pre-sampled augmented copies of the training set, each
  example stored with its input, labels and teacher logits (for a stochastic
  policy turned static by `cached_views=N`).

A disk cache lives in `<cache_dir>/<key>/`, where the key digests everything
its contents depend on (the teacher's weights, the dataset's content, the
policy, the seed, ...), so a changed teacher or dataset never reuses a stale
cache. It is written to a staging folder and renamed when complete, so a
killed run never leaves a cache that looks finished, and its manifest records
a digest of every file: a cache damaged since (a file deleted or cut short)
is reported by path and rebuilt, never read.
"""

import json
import logging
import os
import shutil

import numpy as np
import tensorflow as tf

from keras_kd import digests
from keras_kd import export
from keras_kd import trace_cache

MODES = ("auto", "memory", "disk", "off")
_MANIFEST = "manifest.json"


def memory_budget():
    """Bytes `auto` mode may keep in memory: a quarter of RAM, at most 2 GiB."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    return min(2 << 30, ram // 4)


def resolve_mode(mode, estimated_bytes):
    """`"memory"` or `"disk"` for a requested mode and a cache's size."""
    if mode == "auto":
        return "memory" if estimated_bytes <= memory_budget() else "disk"
    return mode


def cache_key(parts):
    """A short digest of the JSON-ready `parts` a cache depends on."""
    return digests.json_digest(parts, length=24)


def teacher_logits_fn(teacher):
    """A compiled function from inputs to the teacher's float32 logits."""

    @tf.function(reduce_retracing=True)
    def logits(inputs):
        return tf.cast(teacher(inputs, training=False), tf.float32)

    return logits


def static_logits(teacher, split, mode, cache_dir=None, key_parts=None, batch_size=256):
    """The teacher's logits for every example of `split`, in its order.

    Args:
        teacher: the teacher model.
        split: an unbatched dataset of `(x, y)`.
        mode: `"memory"` (computed now) or `"disk"` (read from, or written to,
            `cache_dir`).
        cache_dir: root folder of disk caches.
        key_parts: what the logits depend on, digested into the disk key.
        batch_size: examples per teacher call.

    Returns:
        A float32 array `[examples, classes]`.
    """

    def compute():
        # In a sweep, a later teacher of this structure reuses the trace.
        with trace_cache.stand_ins(teacher) as (kept,):
            logits_of = trace_cache.kept(("teacher_logits", kept),
                                         lambda: teacher_logits_fn(kept))
            return np.concatenate(
                [logits_of(x).numpy() for x, _ in split.batch(batch_size)], axis=0
            )

    if mode == "memory":
        return compute()
    path = _disk_path(cache_dir, key_parts)
    if not _is_complete(path):
        logits = compute()
        with export.atomic_path(path) as staged:
            os.makedirs(staged)
            np.save(os.path.join(staged, "logits.npy"), logits)
            _write_manifest(staged, key_parts, examples=len(logits))
    return np.load(os.path.join(path, "logits.npy"))


def cached_views(teacher, make_view, num_views, mode, cache_dir=None, key_parts=None):
    """`num_views` augmented copies of a training set, with teacher logits.

    Args:
        teacher: the teacher model.
        make_view: `make_view(k)` returns the k-th copy as an iterable of batch
            dicts (`x`, `y`, and optionally `hard_label_mask`, `temperature`).
        num_views: how many copies.
        mode: `"memory"` or `"disk"`.
        cache_dir: root folder of disk caches.
        key_parts: what the views depend on, digested into the disk key.

    Returns:
        One unbatched `tf.data.Dataset` per view, of dicts that also carry
        `teacher_logits`.
    """
    logits_of = teacher_logits_fn(teacher)

    def labeled_view(k):
        batches = [
            {**batch, "teacher_logits": logits_of(batch["x"])} for batch in make_view(k)
        ]
        return {
            key: np.concatenate([batch[key].numpy() for batch in batches], axis=0)
            for key in batches[0]
        }

    if mode == "memory":
        return [tf.data.Dataset.from_tensor_slices(labeled_view(k)) for k in range(num_views)]
    path = _disk_path(cache_dir, key_parts)
    if not _is_complete(path):
        with export.atomic_path(path) as staged:
            os.makedirs(staged)
            examples = []
            for k in range(num_views):
                view = labeled_view(k)
                examples.append(len(view["x"]))
                tf.data.Dataset.from_tensor_slices(view).save(_view_path(staged, k))
            _write_manifest(staged, key_parts, examples=examples)
    return [tf.data.Dataset.load(_view_path(path, k)) for k in range(num_views)]


def _disk_path(cache_dir, key_parts):
    if cache_dir is None:
        raise ValueError("A disk cache needs a cache_dir; got None.")
    return os.path.join(cache_dir, cache_key(key_parts))


def _view_path(path, k):
    return os.path.join(path, f"view_{k}")


def _is_complete(path):
    """Whether a finished, undamaged cache is at `path`; a damaged one is removed."""
    manifest_path = os.path.join(path, _MANIFEST)
    if not os.path.isfile(manifest_path):
        return False
    try:
        with open(manifest_path) as f:
            expected = json.load(f)["files"]
    except (OSError, ValueError, KeyError):
        expected = None
    found = _file_digests(path)
    if expected is not None and found == expected:
        return True
    damage = "its manifest lists no file digests" if expected is None else ", ".join(
        f"{name}: {'missing' if name not in found else 'changed'}"
        for name in sorted(expected) if found.get(name) != expected[name]
    ) or "unexpected files"
    logging.warning("The teacher-output cache at %s is damaged (%s); rebuilding it.",
                    path, damage)
    shutil.rmtree(path, ignore_errors=True)
    return False


def _file_digests(path):
    """`{relative path: sha256}` of every file under `path` but the manifest."""
    found = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            if relative == _MANIFEST:
                continue
            found[relative] = digests.file_digest(full)
    return found


def _write_manifest(path, key_parts, **details):
    with open(os.path.join(path, _MANIFEST), "w") as f:
        json.dump({"key": key_parts, **details, "files": _file_digests(path)}, f, indent=2,
                  default=str)
