"""Mixup and CutMix: soft targets, lambda's distribution against numpy's Beta sampler, the
corrected CutMix area, pixels against numpy, replay from (seed, batch, worker)."""
import numpy as np
import pytest
import tensorflow as tf

from input import mixing

CLASSES = 5


def batch(size=6, height=12, width=16):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (size, height, width, 3)).astype(np.float32)
    labels = rng.integers(0, CLASSES, size).astype(np.int32)
    return images, labels


def mixed(mix, key):
    images, labels = batch()
    out, targets = mix(tf.constant(images), tf.constant(labels), num_classes=CLASSES,
                       seed=tf.constant(key, tf.int64))
    return images, labels, out.numpy(), targets.numpy()


def shares(images, labels, targets):
    """lambda: the share of each example's own class (first example, own != partner's)."""
    assert labels[0] != labels[-1]
    return targets[0, labels[0]]


@pytest.mark.smoke
def test_mixup_pixels_and_targets_match_numpy():
    for key in ([1, 0], [1, 1], [2, 5]):
        images, labels, out, targets = mixed(mixing.Mixing(mixup_alpha=0.4), key)
        lam = shares(images, labels, targets)
        np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], atol=1e-6)
        own = np.eye(CLASSES)[labels]
        np.testing.assert_allclose(targets, lam * own + (1 - lam) * own[::-1], atol=1e-6)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.smoke
def test_cutmix_box_area_is_one_minus_corrected_lambda():
    seen_cut = 0
    for n in range(40):
        images, labels, out, targets = mixed(mixing.Mixing(cutmix_alpha=1.0), [3, n])
        from_partner = np.all(out == images[::-1], axis=-1) & np.any(out != images, axis=-1)
        from_own = np.all(out == images, axis=-1)
        assert np.all(from_partner | from_own)
        box = from_partner[0]
        lam = shares(images, labels, targets)
        # Every example has the same box; its area is exactly 1 - lambda after correction.
        assert np.all(from_partner == box)
        assert box.mean() == pytest.approx(1 - lam, abs=1e-6)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
        if box.any():
            rows, cols = np.nonzero(box)
            assert box.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)  # a rectangle
            seen_cut += 1
    assert seen_cut > 30


def ks_two_sample(a, b):
    """The two-sample Kolmogorov-Smirnov statistic."""
    points = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), points, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return np.max(np.abs(cdf_a - cdf_b))


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_lambda_follows_beta_alpha_alpha(alpha):
    n = 4000
    seeds = tf.stack([tf.fill([n], tf.constant(11, tf.int64)), tf.range(n, dtype=tf.int64)], 1)
    draws = tf.function(lambda s: tf.map_fn(lambda k: mixing.beta(k, alpha), s,
                                            fn_output_signature=tf.float32))
    ours = draws(seeds).numpy()
    reference = np.random.default_rng(1).beta(alpha, alpha, n)
    # Critical value of the two-sample test at significance 0.001: 1.95 sqrt(2 / n).
    assert ks_two_sample(ours, reference) < 1.95 * np.sqrt(2 / n)
    assert abs(ours.mean() - 0.5) < 0.03


def test_probability_and_switch_share():
    mix = mixing.Mixing(mixup_alpha=0.2, cutmix_alpha=1.0, prob=0.6)
    n = 2000
    draws = [mix.draw(tf.constant([4, k], tf.int64)) for k in range(n)]
    lams = np.array([float(lam) for lam, _ in draws])
    cut = np.array([bool(c) for _, c in draws])
    unmixed = lams == 1.0
    assert abs(unmixed.mean() - 0.4) < 0.045  # 4 sigma of a binomial share
    assert not np.any(cut & unmixed)
    assert abs(cut[~unmixed].mean() - 0.5) < 0.06


@pytest.mark.smoke
def test_stream_mixes_by_batch_number_and_slot():
    images, labels = batch()
    data = tf.data.Dataset.from_tensors((images, labels)).repeat(6)
    mix = mixing.Mixing(mixup_alpha=1.0, cutmix_alpha=1.0)

    def run(first_batch, slot, take):
        stream = data.take(take)
        return [t.numpy() for _, t in mixing.mix_batches(
            stream, mix, num_classes=CLASSES, seed=9, slot=slot, first_batch=first_batch)]
    whole = run(0, 0, 6)
    assert [t.tobytes() for t in run(4, 0, 2)] == [t.tobytes() for t in whole[4:]]
    other_slot = run(0, 1, 6)
    assert all(a.tobytes() != b.tobytes() for a, b in zip(whole, other_slot))
    assert len({t.tobytes() for t in whole}) == 6
