"""Precise BN statistics against numpy over the same batches, on 1 and 2 workers."""
import os
import sys

import numpy as np
import pytest

from engine import precise_bn
from tests import helpers

pytestmark = pytest.mark.smoke
PROBE = os.path.join(os.path.dirname(__file__), "precise_bn_probe.py")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def check(out_dir, workers):
    ranks = [dict(np.load(out_dir / f"rank{r}.npz")) for r in range(workers)]
    layers = int(ranks[0]["layers"])
    assert layers > 10 and all(int(r["size"]) == workers for r in ranks)
    assert all(bool(r["rng_untouched"]) for r in ranks)  # no dropout drawn
    for i in range(layers):
        means = np.concatenate([r[f"batch_means_{i}"] for r in ranks])  # every worker's batches
        variances = np.concatenate([r[f"batch_vars_{i}"] for r in ranks])
        want_mean = means.mean(axis=0)
        want_var = variances.mean(axis=0) + means.var(axis=0)
        for r in ranks:
            np.testing.assert_allclose(r[f"mean_{i}"], want_mean, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(r[f"var_{i}"], want_var, rtol=1e-5, atol=1e-6)


def test_statistics_equal_numpy_over_the_same_batches(small_data, tmp_path):
    helpers.run_checked([sys.executable, PROBE, small_data, str(tmp_path)], timeout=300)
    check(tmp_path, 1)


def test_statistics_equal_numpy_over_both_workers_batches(small_data, tmp_path):
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, PROBE, small_data, str(tmp_path)], timeout=300)
    check(tmp_path, 2)


def test_unsettled_share_fires_on_a_short_run_and_not_on_the_demo():
    """make demo: its epochs of 1,000 // batch steps at momentum 0.99 (settled); a 2-epoch run
    of the same (not: momentum ** updates of the initial values are left)."""
    flags = {}
    with open(os.path.join(helpers.REPO, "launch", "recipes", "demo.flags")) as f:
        for line in f:
            if line.startswith("--") and "=" in line:
                name, value = line[2:].strip().split("=", 1)
                flags[name] = value
    steps_per_epoch = 1000 // int(flags["batch_size"])
    assert precise_bn.unsettled_share(int(flags["epochs"]) * steps_per_epoch, 0.99) is None
    left = precise_bn.unsettled_share(2 * steps_per_epoch, 0.99)
    assert left == pytest.approx(0.99 ** (2 * steps_per_epoch)) and left > 0.05
    assert precise_bn.unsettled_share(299, 0.99) is not None
    assert precise_bn.unsettled_share(300, 0.99) is None
