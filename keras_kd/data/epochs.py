"""Epochs as pure functions of a seed and an epoch number.

A training pipeline is built as `make_epoch(epoch_seed)`: every random draw of
an epoch (its shuffle, its augmentations) is a stateless function of that
epoch's seed. `stream` lays epochs out in one of two ways:

- `stop=None`: one epoch per pass over the dataset, each pass a fresh random
  epoch (what `fit(dataset, epochs=N)` wants);
- `start`, `stop`: epochs `start .. stop - 1` back to back in a single pass,
  epoch `e` seeded by `(seed, e)` alone. A run resumed at epoch `k` builds the
  stream from `k` and sees exactly the batches the uninterrupted run saw, and
  a fit under any distribution strategy sees the same batches as on one
  device. Fit it with `steps_per_epoch`.
"""

import tensorflow as tf

from keras_kd import seeds

SHUFFLE_BLOCK = 50_000


def stream(make_epoch, seed, start=0, stop=None):
    """The epochs of `make_epoch`, one per pass (`stop=None`) or `start..stop-1`.

    Args:
        make_epoch: a function from an epoch's `[2]` seed tensor to the
            `tf.data.Dataset` of that epoch.
        seed: the run's integer seed.
        start: the first epoch, with `stop`.
        stop: one past the last epoch, or `None` for one random epoch per pass.
    """
    if stop is None:
        if start:
            raise ValueError(f"start={start} needs stop, the epoch to end before.")
        # Seeded by `seed` (and TensorFlow's global seed, as any seeded tf.data
        # op), and redrawn on every pass.
        epochs = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1)
    else:
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
        if start > stop:
            raise ValueError(f"start={start} is past stop={stop}.")
        epochs = tf.data.Dataset.range(start, stop)
    return epochs.flat_map(lambda epoch: make_epoch(seeds.epoch_seed(seed, epoch)))


def steps_per_epoch(dataset, epochs=None, initial_epoch=0):
    """The batches per epoch of a dataset of known length from `stream`.

    Args:
        dataset: one epoch per pass (`epochs=None`), or the epochs
            `initial_epoch .. epochs - 1`.
        epochs: as passed to the function that built `dataset`.
        initial_epoch: likewise.
    """
    total = int(dataset.cardinality())
    if total < 0:
        raise ValueError("The dataset's length is unknown; it must be known to count steps.")
    count = 1 if epochs is None else epochs - initial_epoch
    if count <= 0:
        raise ValueError(f"No epochs from initial_epoch={initial_epoch} to epochs={epochs}.")
    return total // count


def shuffled_batches(examples, size, batch_size, drop_remainder=False):
    """Batches of `examples` (of known `size`), in an order drawn statelessly from a seed.

    The same batches as `examples` shuffled and then batched. Sets of up to
    `SHUFFLE_BLOCK` examples are shuffled whole; larger ones within
    consecutive blocks of about that many (a multiple of `batch_size`), as a
    shuffle buffer of that size would roughly do. Each block is held in
    memory, and each batch is gathered from it directly, with no per-example
    work. Call it outside `stream`'s `make_epoch` and take the epoch's batches
    from the returned function, so that a set of one block is assembled once
    and kept for every epoch.

    Returns:
        A function from an epoch's `[2]` seed to that epoch's batches.
    """
    block = max(batch_size, min(size, SHUFFLE_BLOCK) // batch_size * batch_size)
    blocks = examples.batch(block)
    if size <= block:
        # One block: the whole set, assembled once and kept.
        blocks = blocks.cache()

    def batches_of_block(index, block_examples, seed):
        count = tf.shape(tf.nest.flatten(block_examples)[0])[0]
        order = tf.argsort(tf.random.stateless_uniform([count], seeds.fold_in(seed, index)))
        # Blocks hold whole batches; only the last block can end in a partial one.
        num_batches = count // batch_size if drop_remainder else -(-count // batch_size)

        def batch(step):
            indices = order[step * batch_size:(step + 1) * batch_size]
            return tf.nest.map_structure(
                lambda t: _with_batch_dim(tf.gather(t, indices), batch_size, drop_remainder),
                block_examples,
            )

        return tf.data.Dataset.range(tf.cast(num_batches, tf.int64)).map(
            batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    def epoch_batches(seed):
        return blocks.enumerate().flat_map(
            lambda index, block_examples: batches_of_block(index, block_examples, seed)
        )

    return epoch_batches


def shuffled(examples, size, seed):
    """`examples` (of known `size`), one by one, in an order drawn statelessly from `seed`.

    Shuffled as `shuffled_batches` shuffles; prefer it when batching next.
    """
    block = max(1, min(size, SHUFFLE_BLOCK))

    def permute(index, block_examples):
        count = tf.shape(tf.nest.flatten(block_examples)[0])[0]
        order = tf.argsort(tf.random.stateless_uniform([count], seeds.fold_in(seed, index)))
        return tf.nest.map_structure(lambda t: tf.gather(t, order), block_examples)

    return examples.batch(block).enumerate().map(permute).unbatch()


def _with_batch_dim(tensor, batch_size, drop_remainder):
    if not drop_remainder:
        return tensor
    return tf.ensure_shape(tensor, [batch_size, *tensor.shape[1:]])


def batched(
    split, batch_size, shuffle=False, seed=None, drop_remainder=False, epochs=None,
    initial_epoch=0,
):
    """Batches an unbatched split, shuffling each epoch reproducibly if asked.

    Args:
        split: an unbatched `tf.data.Dataset` (of known length, to shuffle).
        batch_size: examples per batch (the global batch under a strategy).
        shuffle: whether to reshuffle the whole split each epoch.
        seed: the shuffle seed; the same seed gives the same batches.
        drop_remainder: whether to drop a last partial batch.
        epochs: `None`: one epoch per pass, each pass reshuffled. An int:
            epochs `initial_epoch .. epochs - 1` back to back in one pass,
            each shuffled by `(seed, epoch)` alone, so a resumed run sees the
            same batches (fit with `steps_per_epoch`; see `stream`).
        initial_epoch: the first epoch, with `epochs`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if not shuffle and epochs is None:
        return prefetched(split.batch(batch_size, drop_remainder=drop_remainder))
    size = int(split.cardinality())
    if shuffle and size < 0:
        raise ValueError(
            "Shuffling needs the split's length; pass a dataset of known "
            "cardinality (apply tf.data.experimental.assert_cardinality)."
        )

    if shuffle:
        make_epoch = shuffled_batches(split, size, batch_size, drop_remainder)
    else:
        def make_epoch(_):
            return split.batch(batch_size, drop_remainder=drop_remainder)

    batches = stream(make_epoch, seed or 0, initial_epoch, epochs)
    if size >= 0:
        steps = size // batch_size if drop_remainder else -(-size // batch_size)
        total = steps if epochs is None else steps * (epochs - initial_epoch)
        batches = batches.apply(tf.data.experimental.assert_cardinality(total))
    return prefetched(batches)


def prefetched(batches):
    """`batches` prefetched, with tf.data's autotuning model off.

    Its thread held the end of every pass over a pipeline for up to a
    second (measured: of twelve 240-step fits of the study's 1-D ResNet-8,
    five ended 1.0 s late), about a third of a small fit's time. Without
    it, maps asked for `AUTOTUNE` parallelism run on every core and the
    prefetch buffer adapts on its own; the batches are the same.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)
