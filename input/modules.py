"""Input modules: `imagenet` (the recipe's TFRecords), `folder` (class-per-folder images),
`synthetic` (random tensors on the device, no I/O).

Every module offers, for worker `worker` (its rank) of `workers`:
    train_dataset(batch_size, worker=, workers=, seed=, start_example=,
        micro_batches=) -> endless (images float32 [B, S, S, 3], labels [B] int32 0-based)
        batches; with `mixing` (mixup/CutMix), soft targets [B, num_classes] float32 instead of
        the labels. Each batch is `micro_batches` micro-batches of the run's slots (see
        `worker_slots`), each slot's stream a function of (seed, slot, position) alone.
    eval_dataset(batch_size, worker=, workers=) -> one exact pass of
        (images, labels, mask) batches; eval_batches(batch_size, workers) of them
    num_examples(split), num_classes, class_names (or None)
    explain(error, splits=, seconds=) -> InputError: a pipeline failure, located (file and
        record) where a search of at most `seconds` finds it
"""
import glob
import json
import os
import time
from typing import Optional

import tensorflow as tf

from input import mixing as mixes
from input import pipeline, records
from input.options import InputOptions

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "validation")


def worker_slots(worker, workers, micro_batches):
    """The slots whose micro-batches worker `worker` of `workers` (W) runs, in order: a run's
    global batch is W x micro_batches fixed slots, and worker r runs slots r, r + W, r + 2W,
    ... Any W that divides the slot count runs the same slots."""
    return [worker + i * workers for i in range(micro_batches)]


def slot_batches(slot_stream, batch_size, *, worker, workers, start_example,
                 micro_batches):
    """This worker's batches: one micro-batch of each of its slots, in slot order, joined.

    slot_stream(micro, slot, num_slots, start_example) -> (images, targets) micro-batches of
    one slot, `start_example` being the examples that slot already gave (a resume);
    start_example here counts this worker's (all its slots')."""
    if batch_size % micro_batches:
        raise ValueError(f"a batch of {batch_size} does not split into {micro_batches} "
                         f"micro-batches")
    micro, num_slots = batch_size // micro_batches, workers * micro_batches
    streams = [slot_stream(micro, slot, num_slots, start_example // micro_batches)
               for slot in worker_slots(worker, workers, micro_batches)]
    if len(streams) == 1:
        return streams[0]

    def join(*parts):
        return tuple(tf.concat(list(pieces), 0) for pieces in zip(*parts))
    return tf.data.Dataset.zip(tuple(streams)).map(join).prefetch(pipeline.AUTOTUNE)


def _mixed(batches, mixing, *, num_classes, seed, slot, first_batch):
    """The batches, mixed when `mixing` is on (mixing.mix_batches)."""
    if mixing is None or not mixing.enabled:
        return batches
    return mixes.mix_batches(batches, mixing, num_classes=num_classes, seed=seed, slot=slot,
                             first_batch=first_batch)


class _Source:
    """Units with their example counts, read by `elements` and decoded by `parse`."""

    def __init__(self, paths, counts, elements, parse):
        self.paths, self.counts = paths, counts
        self.elements, self.parse = elements, parse


class _FileBacked:
    """What imagenet and folder share: two sources, the pipelines, the corrupt-example policy.
    `options` (an InputOptions) says how examples are read and prepared; `mixing` (mixup/CutMix
    per batch) or None."""

    def __init__(self, dataset_dir: str, *, options: InputOptions = InputOptions(),
                 train_subset: str = "train", val_subset: str = "validation",
                 num_classes: Optional[int] = None, mixing: Optional[mixes.Mixing] = None):
        self.dataset_dir, self.options, self.mixing = dataset_dir, options, mixing
        self.subsets = {"train": train_subset, "validation": val_subset}
        self.num_classes = num_classes
        self.image_size = options.image_size
        self._sources = {}
        self._bad = {}

    def num_examples(self, split):
        return sum(self.source(split).counts) - len(self.bad_examples(split))

    def bad_examples(self, split):
        """[(path, index, reason)] left out with skip_corrupt (found by one slow scan)."""
        if not self.options.skip_corrupt:
            return []
        if split not in self._bad:
            self._bad[split] = pipeline.find_bad_examples(self.source(split))
        return self._bad[split]

    def _skip_examples(self, split):
        """The (unit, index) pairs of the split's bad examples (none without skip_corrupt)."""
        paths = self.source(split).paths
        return [(paths.index(path), index) for path, index, _ in self.bad_examples(split)]

    def train_dataset(self, batch_size, *, worker=0, workers=1, seed=0, start_example=0,
                      micro_batches=1):
        def slot_stream(micro, slot, num_slots, start):
            batches = pipeline.train_dataset(
                self.source("train"), batch_size=micro, shard_index=slot, num_shards=num_slots,
                seed=seed, start_example=start, skip_examples=self._skip_examples("train"),
                options=self.options)
            return _mixed(batches, self.mixing, num_classes=self.num_classes, seed=seed,
                          slot=slot, first_batch=start // micro)
        return slot_batches(slot_stream, batch_size, worker=worker,
                            workers=workers, start_example=start_example,
                            micro_batches=micro_batches)

    def eval_dataset(self, batch_size, *, worker=0, workers=1):
        return pipeline.eval_dataset(
            self.source("validation"), batch_size=batch_size, shard_index=worker,
            num_shards=workers, skip_examples=self._skip_examples("validation"),
            options=self.options)

    def eval_batches(self, batch_size, workers=1):
        return pipeline.eval_batches(self.source("validation").counts, batch_size, workers)

    def explain(self, error, *, splits=SPLITS, seconds=None):
        """An InputError for a failure raised inside this module's pipelines (a
        tf.errors.OpError): the label check's own message, else the first bad example found by
        decoding `splits` one example at a time for at most `seconds` in all (None: no limit),
        else the error's first line and where to go from there."""
        label = records.label_error(error)
        if label:
            return records.InputError(label)
        line = records.one_line(error)
        left = seconds
        searched = []
        for split in splits:
            try:
                if left is None:
                    bad = pipeline.find_bad_examples(self.source(split), limit=1)
                    found, examined, whole = (bad[0] if bad else None), None, True
                else:
                    started = time.monotonic()
                    found, examined, whole = pipeline.first_bad_example(self.source(split),
                                                                        seconds=left)
                    left = max(0.0, left - (time.monotonic() - started))
            except Exception:  # noqa: BLE001 - a diagnosis must not hide the original error
                continue
            if found:
                path, index, reason = found
                return records.InputError(f"bad input: {path} record {index}: {reason}")
            if not whole:
                searched.append(f"the first {examined:,} examples of {split}")
                return records.InputError(
                    f"bad input: {line}; no bad example among {', '.join(searched)} (searched "
                    f"for {seconds:.0f} s): run again with --skip_corrupt, which scans the data "
                    f"once and leaves bad examples out, or check the data set's files")
            searched.append(f"all of {split}")
        return records.InputError(f"the input pipeline failed: {line} (no bad example in "
                                  f"{', '.join(searched) or 'the data'}: every example decodes "
                                  f"alone)")


class ImageNetRecords(_FileBacked):
    """The recipe's TFRecords: <dataset_dir>/<subset>/<subset>-*, 1-based labels."""

    def __init__(self, dataset_dir, **options):
        super().__init__(dataset_dir, **options)
        self.class_names = None
        self.num_classes = self.num_classes or self._infer_num_classes()

    def _infer_num_classes(self):
        """From the dataset's `dataset.json` (written by our tools), else ImageNet's 1000."""
        meta = os.path.join(self.dataset_dir, "dataset.json")
        if os.path.exists(meta):
            with open(meta) as f:
                info = json.load(f)
            self.class_names = info.get("class_names")
            return int(info["num_classes"])
        return 1000

    def source(self, split):
        if split not in self._sources:
            subset = self.subsets[split]
            paths = records.list_shards(self.dataset_dir, subset)
            counts = records.record_counts(self.dataset_dir, subset, paths)
            paths_tensor = tf.constant(paths)

            def elements(unit_ids, cycle_length, deterministic):
                def read(unit):
                    return tf.data.TFRecordDataset(tf.gather(paths_tensor, unit)).enumerate().map(
                        lambda index, record: (unit, index, record))
                cycle = max(1, min(cycle_length, len(paths)))
                if cycle == 1:
                    return unit_ids.interleave(read, cycle_length=1)
                return unit_ids.interleave(read, cycle_length=cycle,
                                           num_parallel_calls=pipeline.AUTOTUNE,
                                           deterministic=deterministic)

            def parse(unit, index, payload):
                return records.parse(payload, tf.gather(paths_tensor, unit), index,
                                     self.num_classes)

            self._sources[split] = _Source(paths, [counts[os.path.basename(p)] for p in paths],
                                           elements, parse)
        return self._sources[split]


class ImageFolder(_FileBacked):
    """<dataset_dir>/<split>/<class name>/*.{jpg,jpeg,png}; classes sorted by name."""

    def __init__(self, dataset_dir, **options):
        super().__init__(dataset_dir, **options)
        train_dir = os.path.join(dataset_dir, self.subsets["train"])
        if not os.path.isdir(train_dir):
            raise records.InputError(f"split directory {train_dir} does not exist")
        self.class_names = sorted(d for d in os.listdir(train_dir)
                                  if os.path.isdir(os.path.join(train_dir, d)))
        if not self.class_names:
            raise records.InputError(f"split directory {train_dir} has no class folders")
        self.num_classes = self.num_classes or len(self.class_names)

    def _files(self, split):
        folder = os.path.join(self.dataset_dir, self.subsets[split])
        if not os.path.isdir(folder):
            raise records.InputError(f"split directory {folder} does not exist")
        files, labels = [], []
        for label, name in enumerate(self.class_names):
            for path in sorted(glob.glob(os.path.join(folder, name, "*"))):
                if path.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(path)
                    labels.append(label)
        if not files:
            raise records.InputError(f"split directory {folder} holds no images")
        return files, labels

    def source(self, split):
        if split not in self._sources:
            files, labels = self._files(split)
            paths_tensor, labels_tensor = tf.constant(files), tf.constant(labels, tf.int32)

            def elements(unit_ids, cycle_length, deterministic):
                return unit_ids.map(lambda unit: (unit, tf.constant(0, tf.int64),
                                                  tf.constant(b"")))

            def parse(unit, index, payload):
                return tf.io.read_file(tf.gather(paths_tensor, unit)), \
                    tf.gather(labels_tensor, unit)

            self._sources[split] = _Source(files, [1] * len(files), elements, parse)
        return self._sources[split]


class Synthetic:
    """Random images and labels made on the device once and repeated: no I/O, no decode, for
    measuring compute alone."""

    def __init__(self, *, options: InputOptions = InputOptions(), num_classes: int = 1000,
                 num_train_examples: int = 1_281_167, num_val_examples: int = 50_000,
                 mixing: Optional[mixes.Mixing] = None):
        self.options = options
        self.image_size, self.num_classes = options.image_size, num_classes
        self.mixing = mixing
        self.class_names = None
        self._counts = {"train": num_train_examples, "validation": num_val_examples}

    def num_examples(self, split):
        return self._counts[split]

    def _batch(self, batch_size, seed):
        images = tf.random.stateless_uniform([batch_size, self.image_size, self.image_size, 3],
                                             (seed, 1), -1.0, 1.0)
        labels = tf.random.stateless_uniform([batch_size], (seed, 2), 0, self.num_classes,
                                             tf.int32)
        return images, labels

    def train_dataset(self, batch_size, *, worker=0, workers=1, seed=0, start_example=0,
                      micro_batches=1):
        def slot_stream(micro, slot, num_slots, start):
            del num_slots  # every slot repeats its own batch
            batches = tf.data.Dataset.from_tensors(self._batch(micro, seed + slot))
            return _mixed(batches.repeat(), self.mixing, num_classes=self.num_classes,
                          seed=seed, slot=slot, first_batch=start // micro)
        return slot_batches(slot_stream, batch_size, worker=worker,
                            workers=workers, start_example=start_example,
                            micro_batches=micro_batches)

    def eval_batches(self, batch_size, workers=1):
        counts = [self._counts["validation"]]
        return pipeline.eval_batches(counts, batch_size, workers)

    def eval_dataset(self, batch_size, *, worker=0, workers=1):
        total = self._counts["validation"]
        mine = (total - worker + workers - 1) // workers
        batches = self.eval_batches(batch_size, workers)
        images, labels = self._batch(batch_size, 10_000 + worker)
        mask = tf.cast(tf.range(batches * batch_size) < mine, tf.float32)
        masks = tf.data.Dataset.from_tensor_slices(tf.reshape(mask, [batches, batch_size]))
        return masks.map(lambda m: (images, labels, m))

    def explain(self, error, *, splits=SPLITS, seconds=None):
        del splits, seconds  # nothing to scan: synthetic data cannot be corrupt
        return records.InputError(f"the input pipeline failed: {records.one_line(error)}")

    def bad_examples(self, split):
        return []
