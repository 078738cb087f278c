"""The ILSVRC -> TFRecord converter, on a small tree laid out as the raw ILSVRC 2012 data."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from input import imagenet_converter
from tests import helpers

SYNSETS = ["n01440764", "n01443537", "n01484850"]


def save(path, pixels, mode="RGB", fmt="JPEG"):
    Image.fromarray(pixels).convert(mode).save(path, format=fmt, quality=90)


@pytest.fixture
def raw_tree(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "raw"
    sources = {}
    for s in SYNSETS:
        os.makedirs(raw / "train" / s)
        for k in range(4):
            path = raw / "train" / s / f"{s}_{k}.JPEG"
            pixels = rng.integers(0, 256, (30 + k, 40, 3), dtype=np.uint8)
            if s == SYNSETS[1] and k == 0:
                save(path, pixels, fmt="PNG")  # a PNG named .JPEG, as ILSVRC has one
            elif s == SYNSETS[2] and k == 1:
                save(path, pixels, mode="CMYK")  # as ILSVRC's 22 CMYK files
            else:
                save(path, pixels)
            sources[path.name] = s
    os.makedirs(raw / "validation")
    val_labels = [SYNSETS[i % 3] for i in range(5)]
    for i, s in enumerate(val_labels):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        save(raw / "validation" / name, rng.integers(0, 256, (28, 33, 3), dtype=np.uint8))
        sources[name] = s
    (raw / "synset_labels.txt").write_text("\n".join(val_labels) + "\n")
    return raw, sources


def read_records(folder):
    out = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            continue
        for r in tf.data.TFRecordDataset(os.path.join(folder, name)):
            f = tf.train.Example.FromString(r.numpy()).features.feature
            out.append({k: (v.bytes_list.value[0] if v.bytes_list.value
                            else v.int64_list.value[0]) for k, v in f.items()})
    return out


def test_records_match_the_source_files_and_rerun_rewrites_only_missing_shards(raw_tree, tmp_path):
    raw, sources = raw_tree
    out = tmp_path / "records"
    helpers.run_checked([sys.executable, "-m", "launch.preprocess_imagenet",
                         f"--raw_data_dir={raw}", f"--local_scratch_dir={out}",
                         "--train_shards=3", "--validation_shards=2", "--num_workers=2"],
                        timeout=300)
    assert sorted(os.listdir(out / "train")) == [
        "train-00000-of-00003", "train-00001-of-00003", "train-00002-of-00003", "train.counts.json"]
    for split, count in (("train", 12), ("validation", 5)):
        got = read_records(out / split)
        assert len(got) == count
        for r in got:
            name = r["image/filename"].decode()
            synset = sources[name]
            assert r["image/class/synset"].decode() == synset
            assert r["image/class/label"] == SYNSETS.index(synset) + 1
            source_dir = raw / "train" / synset if split == "train" else raw / "validation"
            want = np.asarray(Image.open(source_dir / name).convert("RGB"), np.int32)
            encoded = r["image/encoded"]
            assert encoded[:2] == b"\xff\xd8"  # always JPEG, PNG and CMYK re-encoded
            pixels = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), np.int32)
            assert (r["image/height"], r["image/width"]) == want.shape[:2]
            if name in ("n01443537_0.JPEG", "n01484850_1.JPEG"):
                assert np.abs(pixels - want).mean() < 3  # re-encoded at quality 100
            else:
                assert encoded == (source_dir / name).read_bytes()  # bytes kept as they are
    # Training order is shuffled (not grouped by synset) and the same on every run.
    train_names = [r["image/filename"].decode() for r in read_records(out / "train")]
    assert train_names != sorted(train_names)

    # Interrupted run: one shard missing. The rerun writes it alone.
    victim = out / "train" / "train-00001-of-00003"
    victim.unlink()
    kept = {p: os.stat(out / "train" / p).st_mtime_ns for p in
            ("train-00000-of-00003", "train-00002-of-00003")}
    result = imagenet_converter.convert(str(raw), str(out), 3, 2, num_workers=1, progress=None)
    assert result == {"train": (1, 2), "validation": (0, 2)}
    assert victim.exists()
    assert {p: os.stat(out / "train" / p).st_mtime_ns for p in kept} == kept
    assert [r["image/filename"] for r in read_records(out / "train")] == \
        [n.encode() for n in train_names]


def test_jpeg_components_reads_the_frame_header(tmp_path):
    pixels = np.zeros((8, 8, 3), np.uint8)
    for mode, want in (("RGB", 3), ("L", 1), ("CMYK", 4)):
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG")
        assert imagenet_converter.jpeg_components(buffer.getvalue()) == want


def test_bad_raw_layout_is_refused_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "launch.preprocess_imagenet",
                           f"--raw_data_dir={tmp_path}/nowhere", f"--local_scratch_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=helpers.REPO))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == \
        f"preprocess_imagenet: {tmp_path}/nowhere/train does not exist " \
        f"(expected train/<synset>/*.JPEG)"
