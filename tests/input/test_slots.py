"""Micro-batch slots: the global batch is S slots, each with its own stream, and a worker runs
the slots r, r + W, ... of W workers. Whatever W x N = S, every (step, slot) holds the same
examples drawn and augmented alike; a slot's data-epoch holds each of its examples once; a
resumed stream continues each slot exactly. The probe: records labelled 1..24 (each label is
the example's id)."""
import numpy as np
import pytest

import input as inputs
from input import augment, mixing, modules
from tests.input import record_files

FILES = [6, 6, 6, 6]   # 24 records, 6 per slot when S = 4
MICRO, SLOTS, STEPS = 2, 4, 7  # 3 steps per slot data-epoch: 7 steps cross two of them
LAYOUTS = [(1, 4), (2, 2), (4, 1)]  # workers x micro-batches per worker


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return record_files.write_dataset(tmp_path_factory.mktemp("slot_records"), FILES)


def module(data_dir, **extra):
    return inputs.build("imagenet", dataset_dir=data_dir, num_classes=24, image_size=16,
                        deterministic=True, shuffle_buffer=4, **extra)


def by_slot(data, workers, per_worker, *, steps=STEPS, start_step=0):
    """{(step, slot): (images, targets)} of every worker's batches, cut into micro-batches."""
    out = {}
    for rank in range(workers):
        batches = data.train_dataset(MICRO * per_worker, worker=rank, workers=workers,
                                     seed=3, start_example=start_step * MICRO * per_worker,
                                     micro_batches=per_worker)
        slots = modules.worker_slots(rank, workers, per_worker)
        for step, (images, targets) in enumerate(batches.take(steps), start=start_step):
            for i, slot in enumerate(slots):
                part = slice(i * MICRO, (i + 1) * MICRO)
                out[step, slot] = (images.numpy()[part], targets.numpy()[part])
    return out


@pytest.mark.smoke
def test_worker_slots_cover_the_slots_once():
    for workers, per_worker in LAYOUTS:
        owned = [s for r in range(workers) for s in modules.worker_slots(r, workers, per_worker)]
        assert sorted(owned) == list(range(SLOTS))


@pytest.mark.smoke
def test_every_layout_gives_each_step_and_slot_the_same_examples(data_dir):
    """Example ids per (step, slot) equal for 1x4, 2x2 and 4x1, with RandAugment and random
    erasing on (pixels equal too); each slot's data-epoch holds its 6 examples once and the
    slots' together all 24."""
    data = module(data_dir, randaugment=augment.RandAugment(9, 2, 0.5),
                  random_erasing=0.5)
    runs = {layout: by_slot(data, *layout) for layout in LAYOUTS}
    reference = runs[(1, 4)]
    assert sorted(reference) == [(t, s) for t in range(STEPS) for s in range(SLOTS)]
    for layout, got in runs.items():
        for key, (images, labels) in reference.items():
            np.testing.assert_array_equal(got[key][1], labels, err_msg=f"{layout} {key}")
            np.testing.assert_array_equal(got[key][0], images, err_msg=f"{layout} {key}")
    for data_epoch in (range(0, 3), range(3, 6)):
        seen = {slot: [int(x) for t in data_epoch for x in reference[t, slot][1]]
                for slot in range(SLOTS)}
        for ids in seen.values():
            assert len(set(ids)) == 6
        assert sorted(x for ids in seen.values() for x in ids) == list(range(24))
    # Slots differ from one another: their augmentation draws are keyed by slot too.
    assert not np.array_equal(reference[0, 0][0], reference[0, 1][0])


def test_mixing_is_within_a_micro_batch_and_keyed_by_step_and_slot(data_dir):
    data = module(data_dir, mixing=mixing.Mixing(mixup_alpha=0.4, cutmix_alpha=1.0))
    runs = {layout: by_slot(data, *layout, steps=4) for layout in [(1, 4), (2, 2)]}
    for key, (images, targets) in runs[(1, 4)].items():
        np.testing.assert_array_equal(runs[(2, 2)][key][0], images, err_msg=str(key))
        np.testing.assert_array_equal(runs[(2, 2)][key][1], targets, err_msg=str(key))
        # Soft targets name only classes of the micro-batch's own two examples.
        assert set(np.flatnonzero(targets.sum(axis=0))) <= set(_plain(data_dir)[key].tolist())


_PLAIN = {}


def _plain(data_dir):
    """{(step, slot): labels} of the unmixed stream, computed once."""
    if not _PLAIN:
        for key, (_, labels) in by_slot(module(data_dir), 1, 4, steps=4).items():
            _PLAIN[key] = labels
    return _PLAIN


@pytest.mark.parametrize("workers,per_worker", [(1, 4), (2, 2)])
def test_a_resumed_stream_continues_every_slot(data_dir, workers, per_worker):
    """Started at step 4 on any layout: the uninterrupted 1x4 stream's steps 4-6."""
    data = module(data_dir)
    straight = by_slot(data, 1, 4)
    resumed = by_slot(data, workers, per_worker, steps=3, start_step=4)
    for key, (_, labels) in resumed.items():
        np.testing.assert_array_equal(labels, straight[key][1], err_msg=str(key))
