"""Traced training steps kept for the next model of the same structure.

A sweep trains many models of one architecture, one after another, each from
its own seed. Each fresh model pays for tracing and optimizing its training
step again (about 2 s for a 1-D ResNet-8 on a CPU, against about 1.3 s for its
240 steps): the same graph, with other variables. A `TraceCache` keeps one
compiled trainer per structure and trains each later model on it: the new
model's values are copied into the kept trainer, `fit` runs its step already
traced, and the trained values are copied back. Each step computes what the
new model's own step would, on the same values, so a model trained through
the cache ends with the weights it would have had without it, bit for bit.

The jobs use the cache that is active (`active()`); `keras_kd.experiments`'
sweeps activate one per sweep worker. Outside one, nothing is kept.
"""

import collections
import contextlib
import contextvars
import json
import logging

import keras
import tensorflow as tf

_ACTIVE = contextvars.ContextVar("keras_kd_trace_cache", default=None)
_KEPT_PER_STRUCTURE = 8  # objects `kept` per kept structure, at most


def active():
    """The `TraceCache` in use (inside `TraceCache.activated()`), or `None`."""
    return _ACTIVE.get()


@contextlib.contextmanager
def stand_in(trainer):
    """The active cache's stand-in for `trainer` (`TraceCache.stand_in`), or
    `trainer` itself when no cache is active."""
    cache = active()
    if cache is None:
        yield trainer
        return
    with cache.stand_in(trainer) as kept:
        yield kept


@contextlib.contextmanager
def stand_ins(*models):
    """The active cache's stand-ins for `models` (`TraceCache.stand_ins`), or
    `models` themselves when no cache is active."""
    cache = active()
    if cache is None:
        yield models
        return
    with cache.stand_ins(*models) as kept:
        yield kept


def kept(key, build):
    """What the active cache keeps under `key` (`TraceCache.kept`), or
    `build()` when no cache is active."""
    cache = active()
    return build() if cache is None else cache.kept(key, build)


def any_batch_size(function, autograph=True):
    """`function` of one argument (a tensor, or a nest of them), traced once
    per structure of its argument with every tensor's first (batch)
    dimension left free: a split's smaller last batch, or another split of
    the same structure, runs the same trace.

    `autograph=False` traces the Python as it runs, for code without Python
    control flow on tensor values (keras_kd's metric updates: their
    conversion took most of a report's tracing, about 0.8 s of 1.8 s).

    >>> double = any_batch_size(lambda x: 2 * x)
    >>> [int(double(np.ones((n, 3), "float32")).shape[0]) for n in (4, 1)]
    [4, 1]
    """
    traced = {}

    def call(argument):
        argument = tf.nest.map_structure(tf.convert_to_tensor, argument)
        signature = tf.nest.map_structure(_any_batch_spec, argument)
        key = repr(signature)
        if key not in traced:
            traced[key] = tf.function(function, input_signature=(signature,),
                                      autograph=autograph)
        return traced[key](argument)

    return call


def _any_batch_spec(value):
    shape = value.shape if value.shape.rank == 0 else (None, *value.shape[1:])
    return tf.TensorSpec(shape, value.dtype)


class TraceCache:
    """Compiled trainers kept, one per structure, to train later models on.

    Args:
        capacity: how many structures are kept; the least recently used one
            is dropped beyond that.

    Example:

    >>> def trainer(seed):
    ...     keras.utils.set_random_seed(seed)
    ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     model.compile("sgd", "mse")
    ...     return model
    >>> x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    >>> cache = TraceCache()
    >>> for seed in (0, 1):
    ...     model = trainer(seed)
    ...     with cache.stand_in(model) as kept:
    ...         _ = kept.fit(x, y, epochs=1, verbose=0)
    >>> alone = trainer(1)
    >>> _ = alone.fit(x, y, epochs=1, verbose=0)
    >>> bool(np.array_equal(model.get_weights()[0], alone.get_weights()[0]))
    True
    >>> cache.hits, cache.misses
    (1, 1)
    """

    def __init__(self, capacity=16):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer; got {capacity!r}.")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._kept = collections.OrderedDict()
        self._functions = collections.OrderedDict()

    @contextlib.contextmanager
    def activated(self):
        """Makes this the cache the jobs use, for the `with` block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    @contextlib.contextmanager
    def stand_in(self, trainer):
        """A compiled trainer that computes what `trainer` would, traced once.

        `trainer` is a compiled `keras.Model` (a `keras_kd.Distiller`, a
        `keras_kd.training.Trainer`, ...). The `with` block gets the trainer
        kept for `trainer`'s structure (made on the first use: a copy of
        `trainer` from its config, compiled from its compile config), holding
        `trainer`'s variables and optimizer state; at the block's end,
        `trainer` takes the values the block left. `trainer` itself is
        yielded, and nothing is kept, where a copy could not compute the same
        thing: under a distribution strategy, or when its config does not
        round-trip.
        """
        kept = self._kept_for(trainer)
        if kept is None:
            yield trainer
            return
        _copy(_state(trainer), _state(kept))
        yield kept
        _copy(_state(kept), _state(trainer))

    @contextlib.contextmanager
    def stand_ins(self, *models):
        """Kept models of the structures of `models`, holding their values.

        For what is traced on models, not trained: the block gets a tuple
        of models (`None` stays `None`), each kept for its structure (made
        on the first use from its config) and holding its model's variables;
        functions traced on them and kept with `kept` are traced once.
        """
        # Two models of one structure in one call get two kept copies.
        stand_ins = tuple(
            None if model is None else self._kept_for(
                model, instance=sum(other is not None and _same_class(other, model)
                                    for other in models[:index]))
            for index, model in enumerate(models))
        stand_ins = tuple(model if copy is None else copy
                          for model, copy in zip(models, stand_ins))
        for model, copy in zip(models, stand_ins):
            if model is not None and copy is not model:
                _copy(_state(model), _state(copy))
        yield stand_ins

    def kept(self, key, build):
        """The object kept under `key`, made by `build()` on the first use
        (a function traced on kept models, with the models in `key`, which
        holds them, so an id is never reused; a frozen model loaded from a
        file, keyed by its digest). The least recently used are dropped
        beyond `8 * capacity`."""
        if key in self._functions:
            self._functions.move_to_end(key)
            return self._functions[key]
        self._functions[key] = kept = build()
        while len(self._functions) > _KEPT_PER_STRUCTURE * self.capacity:
            self._functions.popitem(last=False)
        return kept

    def clear(self):
        """Drops every kept trainer, model and function."""
        self._kept.clear()
        self._functions.clear()

    def _kept_for(self, trainer, instance=0):
        if _under_a_strategy(trainer):
            return None
        _build_optimizer(trainer)
        try:
            key = (structure_key(trainer), instance)
        except (TypeError, ValueError, NotImplementedError) as error:
            logging.info("TraceCache: %s is not kept (%s).", trainer.name, error)
            return None
        kept = self._kept.get(key)
        if kept is not None:
            self.hits += 1
            self._kept.move_to_end(key)
            return kept
        try:
            kept = _copy_of(trainer)
        except Exception as error:  # a config that does not round-trip: train as given
            logging.info("TraceCache: %s could not be copied (%s).", trainer.name, error)
            return None
        if _signature(kept) != _signature(trainer):
            return None
        self.misses += 1
        self._kept[key] = kept
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)
        return kept


def structure_key(trainer):
    """What a trainer's traced step depends on, as text: its config and its
    compile config with every layer name replaced by its order of first
    appearance (names differ between models of one structure), and the
    shape and dtype of each of its variables."""
    config = {
        "model": keras.saving.serialize_keras_object(trainer),
        "compile": trainer.get_compile_config() if _compiled(trainer) else None,
        "variables": _signature(trainer),
    }
    return _canonical_names(json.dumps(config, sort_keys=True, default=repr))


# Where a functional model's config refers to layers by name.
_NAME_REFERENCES = ("keras_history", "input_layers", "output_layers")


def _canonical_names(text):
    """`text` with each layer's `"name"`, and each reference to it, replaced
    by its order of first appearance."""
    decoded = json.loads(text)
    names = {}

    def collect(node):
        if isinstance(node, dict):
            name = node.get("name")
            if isinstance(name, str) and name not in names:
                names[name] = f"#{len(names)}"
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    def rename(node, reference=False):
        if isinstance(node, dict):
            return {key: rename(value, key == "name" or key in _NAME_REFERENCES)
                    for key, value in node.items()}
        if isinstance(node, list):
            return [rename(value, reference) for value in node]
        if reference and isinstance(node, str):
            return names.get(node, node)
        return node

    collect(decoded)
    return json.dumps(rename(decoded), sort_keys=True)


def _copy_of(trainer):
    """A new trainer of `trainer`'s structure, compiled as it is."""
    config = keras.saving.serialize_keras_object(trainer)
    copy = keras.saving.deserialize_keras_object(config)
    if _compiled(trainer):
        compile_config = keras.saving.deserialize_keras_object(
            trainer.get_compile_config())
        copy.compile(**compile_config)
        _build_optimizer(copy)
    return copy


def _under_a_strategy(model):
    """Whether `model` is used in a strategy's scope or was made in one (a
    job builds its models in the scope and may fit them outside it): a copy
    made outside the scope would not hold its variables as it does."""
    default = tf.distribute.get_strategy()
    return tf.distribute.has_strategy() or getattr(
        model, "distribute_strategy", default) is not default


def _same_class(model, other):
    return type(model) is type(other)


def _compiled(model):
    return bool(getattr(model, "compiled", False)) and getattr(model, "optimizer", None) is not None


def _build_optimizer(trainer):
    if _compiled(trainer) and not trainer.optimizer.built:
        trainer.optimizer.build(trainer.trainable_variables)


def _state(trainer):
    """The values a trained step reads and writes: every variable of the
    models (the seed generators' too) and of the optimizer. Metrics are
    reset at every epoch's start, so they carry nothing between fits."""
    optimizer = list(trainer.optimizer.variables) if _compiled(trainer) else []
    return list(trainer.variables) + optimizer


def _signature(trainer):
    return [(tuple(v.shape), str(v.dtype)) for v in _state(trainer)]


def _copy(source, target):
    for from_variable, to_variable in zip(source, target, strict=True):
        to_variable.assign(from_variable)
