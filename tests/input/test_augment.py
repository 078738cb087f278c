"""RandAugment and random erasing against Pillow, the library timm's RandAugment calls, on the
photographs that matplotlib ships; replay of the same (seed, example) on both lanes."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from input import augment, preprocessing
from tests.helpers import photo_path, photographs

GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
DIGESTS = os.path.join(os.path.dirname(__file__), "augment_digests.json")


def pillow_op(photo, name, level, sign, increasing):
    """timm's op `name` with Pillow (auto_augment.py: `increasing` is its inc1 level mapping,
    else its default one)."""
    fraction = level / 10
    geometry = dict(resample=Image.BILINEAR, fillcolor=augment.FILL)
    if name == "identity":
        return photo
    if name == "autocontrast":
        return ImageOps.autocontrast(photo)
    if name == "equalize":
        return ImageOps.equalize(photo)
    if name == "rotate":
        return photo.rotate(sign * fraction * 30, **geometry)
    if name == "solarize":
        threshold = min(256, int(fraction * 256))
        return ImageOps.solarize(photo, 256 - threshold if increasing else threshold)
    if name == "posterize":
        bits = int(fraction * 4)
        # timm would ask for 0 bits, which Pillow >= 10 refuses: at least 1, as ours.
        return ImageOps.posterize(photo, max(1, 4 - bits if increasing else bits))
    if name in augment.ENHANCEMENTS:
        enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                    "brightness": ImageEnhance.Brightness,
                    "sharpness": ImageEnhance.Sharpness}[name]
        factor = max(0.1, 1 + sign * fraction * 0.9) if increasing else fraction * 1.8 + 0.1
        return enhancer(photo).enhance(factor)
    w, h = photo.size
    matrix = {"shear_x": (1, sign * fraction * 0.3, 0, 0, 1, 0),
              "shear_y": (1, 0, 0, sign * fraction * 0.3, 1, 0),
              "translate_x": (1, 0, sign * fraction * 0.45 * w, 0, 1, 0),
              "translate_y": (1, 0, 0, 0, 1, sign * fraction * 0.45 * h)}[name]
    return photo.transform(photo.size, Image.AFFINE, matrix, **geometry)


@pytest.mark.smoke
@pytest.mark.parametrize("increasing", [False, True], ids=["default", "inc1"])
@pytest.mark.parametrize("name", augment.OPS)
def test_op_agrees_with_pillow(name, increasing):
    for photo in photographs():
        pixels = tf.constant(np.asarray(photo))
        for level in (0, 5, 10):
            for sign in (1, -1):
                expected = np.asarray(pillow_op(photo, name, level, sign, increasing))
                got = augment.apply_op(pixels, name, level, sign, increasing=increasing)
                assert got.shape == expected.shape
                difference = np.abs(got.numpy().astype(np.int32) - expected.astype(np.int32))
                where = f"{name} at {level}, sign {sign}, {photo.size}"
                if name in GEOMETRIC:
                    # TF interpolates in float32, Pillow in double, and both truncate: a value
                    # within float32's error of an integer may go one level either way (most
                    # often for a fractional translation: 6% of pixels, mean 0.06), and a
                    # border pixel may fall inside or outside the input (then it takes the
                    # fill colour).
                    assert difference.mean() < 0.1, where
                    assert np.mean(difference > 1) < 1e-4, where
                else:
                    # Point ops, histograms and the enhancements replay Pillow's integer
                    # arithmetic and truncation: identical pixels.
                    assert difference.max() == 0, where


@pytest.mark.parametrize("increasing", [False, True], ids=["default", "inc1"])
@pytest.mark.parametrize("name", augment.OPS)
def test_magnitude_zero_is_identity_except_where_it_cannot_be(name, increasing):
    # Halved contrast: the photo itself already spans 0-255, which autocontrast leaves alone.
    photo = (np.asarray(photographs()[0]) // 2 + 40).astype(np.uint8)
    for sign in (1, -1):
        got = augment.apply_op(tf.constant(photo), name, 0, sign, increasing=increasing).numpy()
        if name in augment.not_identity_at_zero(increasing):
            assert not np.array_equal(got, photo), name
        else:
            np.testing.assert_array_equal(got, photo, err_msg=name)


def test_parse_names_what_is_wrong():
    assert augment.RandAugment.parse("9,2") == augment.RandAugment(9.0, 2, 0.0)
    assert augment.RandAugment.parse("7,2,inf").magnitude_std == float("inf")
    assert augment.RandAugment.parse("rand-m7-n2-mstd0.5-inc1") == augment.RandAugment(
        7.0, 2, 0.5, increasing=True)
    assert augment.RandAugment.parse("rand-m9-mstdinf") == augment.RandAugment(
        9.0, 2, float("inf"))
    for text, words in (("11,2", "magnitude"), ("9", "M,N"), ("9,0", "at least one"),
                        ("a,2", "numbers"), ("9,2,-1", "std"), ("rand-n2", "no magnitude"),
                        ("rand-m9-x1", "unknown part 'x1'")):
        with pytest.raises(ValueError, match=words):
            augment.RandAugment.parse(text)


def test_randaugment_changes_and_replays():
    photo = tf.constant(np.asarray(photographs()[0].resize((64, 64))))
    policy = augment.RandAugment(magnitude=9, num_layers=2, magnitude_std=0.5, prob=1.0)
    seeds = [tf.constant([5, n], tf.int64) for n in range(8)]
    first = [policy(photo, s).numpy() for s in seeds]
    again = [policy(photo, s).numpy() for s in seeds]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    changed = sum(not np.array_equal(a, photo.numpy()) for a in first)
    assert changed >= 6  # two ops at magnitude 9: only identity twice leaves it alone
    assert len({a.tobytes() for a in first}) == len(first)


def test_random_erasing_boxes_like_timm():
    image = tf.zeros([40, 60, 3])
    areas = []
    for n in range(200):
        erased = augment.random_erasing(image, tf.constant([3, n], tf.int64), 0.5).numpy()
        mask = np.any(erased != 0, axis=-1)
        if mask.any():
            rows, cols = np.nonzero(mask)
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert box == mask.sum()  # one solid box
            assert np.all(np.any(erased[mask] != 0, axis=-1))
            areas.append(box / mask.size)
    assert 70 <= len(areas) <= 130  # probability 0.5 over 200 examples (4.2 sigma)
    assert 0.015 <= min(areas) and max(areas) <= 0.36  # 2%-33% of the area, rounded


def replay_digests():
    """sha256 of train_image with RandAugment and erasing on, for a few (seed, example)."""
    import hashlib
    with open(photo_path("grace_hopper.jpg"), "rb") as f:
        encoded = tf.constant(f.read())
    out = {}
    for style in preprocessing.STYLES:
        policy = augment.RandAugment(magnitude=9, num_layers=2, magnitude_std=0.5,
                                     increasing=style == "inception")
        for example in range(6):
            image = preprocessing.train_image(encoded, 64, tf.constant([7, example], tf.int64),
                                              style, randaugment=policy, random_erasing=0.5)
            out[f"{style}/{example}"] = hashlib.sha256(image.numpy().tobytes()).hexdigest()
    return out


@pytest.mark.smoke
def test_same_seed_and_example_give_the_same_pixels_on_both_lanes():
    """The digests were written on the TF 2.21 lane (python -m tests.input.test_augment); the
    smoke lane checks TF 2.15 against the same file."""
    with open(DIGESTS) as f:
        assert replay_digests() == json.load(f)


if __name__ == "__main__":
    with open(DIGESTS, "w") as f:
        json.dump(replay_digests(), f, indent=1, sort_keys=True)
        f.write("\n")
