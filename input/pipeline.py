"""tf.data pipelines shared by the file-backed input modules.

A *source* is a sorted list of units (TFRecord shards, or image files) with a known number of
examples each, and two functions: `elements(unit_ids)` turns a dataset of unit ids into
(unit id, index within the unit, payload) elements, and `parse(unit_id, index, payload)` gives
(encoded image bytes, 0-based label).

Training: units sharded by worker before any shuffle (records, by their place in the split,
when there are fewer units than workers) -> per data-epoch unit order shuffled from
(seed, epoch) -> parallel interleave of readers -> shuffle buffer -> parallel decode and augment
with a per-example seed -> batch with drop_remainder -> prefetch. The stream is a pure function
of (seed, shard, example number) when `deterministic`, so a resumed run picks up exactly where
it stopped (`start_example`). The engine's shards are its slots (input/modules.py): a worker
runs one such stream per micro-batch slot it owns.

Evaluation: one pass over every example, split across workers with no overlap, no shuffle, no
repeat; each worker pads to the same number of batches and yields a mask (1 real, 0 padding).
"""
import math
import time

import tensorflow as tf

from input import preprocessing, records
from input.options import InputOptions

AUTOTUNE = tf.data.AUTOTUNE
CYCLE_LENGTH = 10  # files read at once in training, as the recipe's interleave


def _worker_units(num_units, shard_index, num_shards):
    """(unit ids of this worker, record-level shard or None)."""
    if num_units >= num_shards:
        return list(range(shard_index, num_units, num_shards)), None
    return list(range(num_units)), (num_shards, shard_index)


def examples_per_worker(counts, shard_index, num_shards, skip_examples=()):
    """Examples this worker sees in one pass (counts: examples per unit, in unit order),
    less those of `skip_examples` ((unit, index) pairs) that fall in its share."""
    ids, record_shard = _worker_units(len(counts), shard_index, num_shards)
    if record_shard is None:
        share = sum(counts[i] for i in ids)
    else:
        share = (sum(counts) - shard_index + num_shards - 1) // num_shards
    return share - sum(1 for unit, index in skip_examples
                       if worker_of(counts, unit, index, num_shards) == shard_index)


def worker_of(counts, unit, index, num_shards):
    """The worker whose share holds example `index` of unit `unit`: units go round-robin when
    there are enough of them, records otherwise, by their place in the whole split."""
    if len(counts) >= num_shards:
        return unit % num_shards
    return (sum(counts[:unit]) + index) % num_shards


def _records_of_worker(elements, counts, num_shards, shard_index):
    """Keeps the records `worker_of` gives this worker. Decided by a record's place in the
    split, not in the (shuffled) stream, so a worker holds the same records every data-epoch
    and knows how many of them are skipped: what an exact resume needs."""
    first = tf.constant([sum(counts[:u]) for u in range(len(counts))], tf.int64)

    def mine(unit, index, payload):
        del payload
        return (tf.gather(first, unit) + index) % num_shards == shard_index
    return elements.filter(mine)


def _without(elements, skip_examples):
    """elements (unit, index, payload) less the (unit, index) pairs of skip_examples."""
    if not skip_examples:
        return elements
    keys = tf.constant([f"{unit}:{index}" for unit, index in skip_examples])
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int32)), 0)

    def keep(unit, index, payload):
        del payload
        key = tf.strings.join([tf.strings.as_string(unit), tf.strings.as_string(index)], ":")
        return table.lookup(key) == 0
    return elements.filter(keep)


def _options(deterministic, private_threads):
    options = tf.data.Options()
    options.deterministic = deterministic
    if private_threads:
        options.threading.private_threadpool_size = private_threads
    return options


# TensorFlow reduces seeds modulo this (tensorflow/python/framework/random_seed.py).
_MAXINT32 = 2**31 - 1


def _settle_graph_seed():
    """Inside a tf.data function: the shuffles below take seed tensors (one per epoch), which
    TensorFlow's Python seed check cannot handle when the global seed is 0 modulo 2**31 - 1 (a
    common tf.random.set_seed(0)): it tests seeds == (0, 0), asking a tensor for a truth value.
    Then this function's own graph takes another fixed graph-level seed; any other global seed
    is left as it is, and with it every stream it gives."""
    graph = tf.compat.v1.get_default_graph()
    if graph.seed is not None and graph.seed % _MAXINT32 == 0:
        graph.seed = _MAXINT32 - 1


def train_dataset(source, *, batch_size: int, shard_index: int = 0, num_shards: int = 1,
                  seed: int = 0, start_example: int = 0, skip_examples=(),
                  options: InputOptions = InputOptions()) -> tf.data.Dataset:
    """Endless (images [B, S, S, 3], labels [B] int32) batches for this worker.

    start_example: examples this worker already consumed (resume = steps done x batch_size).
    skip_examples: (unit id, index) pairs to leave out (known-corrupt records).
    options: image size, style, parallelism, order, augmentations (input.options).
    """
    deterministic, shuffle_buffer = options.deterministic, options.shuffle_buffer
    ids, record_shard = _worker_units(len(source.counts), shard_index, num_shards)
    per_epoch = examples_per_worker(source.counts, shard_index, num_shards, skip_examples)
    if per_epoch == 0:
        raise ValueError("this worker's share of the training split is empty")
    first_epoch, offset = divmod(start_example, per_epoch)
    ids_tensor = tf.constant(ids, tf.int64)

    def epoch(k):
        _settle_graph_seed()
        order = tf.data.Dataset.from_tensor_slices(ids_tensor).shuffle(
            len(ids), seed=seed * 1_000_003 + k, reshuffle_each_iteration=False)
        elements = source.elements(order, CYCLE_LENGTH, deterministic)
        if record_shard is not None:
            elements = _records_of_worker(elements, source.counts, *record_shard)
        elements = _without(elements, skip_examples)
        if shuffle_buffer > 1:
            elements = elements.shuffle(shuffle_buffer, seed=seed * 7_919 + k,
                                        reshuffle_each_iteration=False)
        return elements

    stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
    stream = stream.enumerate(start=start_example)

    def decode(number, element):
        unit, index, payload = element
        encoded, label = source.parse(unit, index, payload)
        # Keyed by the shard too: the shards' streams count their examples alike, and without
        # it example k of every shard would be cropped, flipped and augmented the same way.
        example_seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.cast(seed, tf.int64), number]), shard_index)
        image = preprocessing.train_image(
            encoded, options.image_size, example_seed,
            options.preprocessing, randaugment=options.randaugment,
            random_erasing=options.random_erasing)
        return image, label

    stream = stream.map(decode, num_parallel_calls=options.num_parallel_calls,
                        deterministic=deterministic)
    stream = stream.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE)
    return stream.with_options(_options(deterministic, options.private_threads))


def eval_batches(counts, batch_size, num_shards):
    """Batches every worker yields in one exact evaluation pass (the same on all workers)."""
    most = max(examples_per_worker(counts, r, num_shards) for r in range(num_shards))
    return max(1, math.ceil(most / batch_size))


def eval_dataset(source, *, batch_size: int, shard_index: int = 0, num_shards: int = 1,
                 skip_examples=(), options: InputOptions = InputOptions()) -> tf.data.Dataset:
    """One pass: (images, labels, mask [B] float32) batches; summed over workers, every example
    but `skip_examples` ((unit, index) pairs) has mask 1 exactly once."""
    ids, record_shard = _worker_units(len(source.counts), shard_index, num_shards)
    mine = examples_per_worker(source.counts, shard_index, num_shards, skip_examples)
    total_batches = eval_batches(source.counts, batch_size, num_shards)
    elements = source.elements(tf.data.Dataset.from_tensor_slices(tf.constant(ids, tf.int64)),
                               1, True)
    if record_shard is not None:
        elements = _records_of_worker(elements, source.counts, *record_shard)
    elements = _without(elements, skip_examples)

    def decode(unit, index, payload):
        encoded, label = source.parse(unit, index, payload)
        image = preprocessing.eval_image(encoded, image_size, options.preprocessing)
        return image, label, tf.constant(1.0)

    image_size = options.image_size
    real = elements.map(decode, num_parallel_calls=options.num_parallel_calls,
                        deterministic=True)
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([image_size, image_size, 3], tf.float32), tf.constant(0, tf.int32),
         tf.constant(0.0))).repeat(total_batches * batch_size - mine)
    batches = real.concatenate(padding).batch(batch_size, drop_remainder=True)
    return batches.prefetch(AUTOTUNE).with_options(_options(True, options.private_threads))


def find_bad_examples(source, limit=None):
    """[(path, index, reason)] for examples that are truncated, unparsable, labelled out of range
    or undecodable. One example at a time: slow, for diagnosis and for skip lists."""
    bad = []
    for path, index, reason in scan_examples(source):
        if reason is not None:
            bad.append((path, index, reason))
            if limit and len(bad) >= limit:
                break
    return bad


def first_bad_example(source, *, seconds):
    """(the first bad example as (path, index, reason) or None, the examples examined, whether
    the whole source was), looking for at most `seconds`."""
    deadline = time.monotonic() + seconds
    examined = 0
    for path, index, reason in scan_examples(source):
        examined += 1
        if reason is not None:
            return (path, index, reason), examined, False
        if time.monotonic() > deadline:
            return None, examined, False
    return None, examined, True


def scan_examples(source):
    """(path, index, reason or None) of each example in order, each decoded alone; a unit that
    cannot be read further ends with its unreadable example."""
    @tf.function
    def check(unit, index, payload):
        encoded, label = source.parse(unit, index, payload)
        # A value of the pixels, not their (static) shape, so that the decode is not pruned.
        return tf.reduce_sum(preprocessing.eval_image(encoded, 8)), label

    for unit, path in enumerate(source.paths):
        iterator = iter(source.elements(tf.data.Dataset.from_tensors(tf.constant(unit, tf.int64)),
                                        1, True))
        index = 0
        while True:
            try:
                element = next(iterator)
            except StopIteration:
                break
            except (tf.errors.DataLossError, tf.errors.NotFoundError) as e:
                yield path, index, f"unreadable: {records.one_line(e)}"
                break
            try:
                check(*element)
                reason = None
            except (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                    tf.errors.NotFoundError) as e:
                reason = records.one_line(e)
            yield path, index, reason
            index += 1
