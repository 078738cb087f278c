"""The engine under horovodrun -np 2 --gloo: exact gradient averaging, identical replicas."""
import os
import sys

import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.smoke
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def test_allreduce_is_the_mean_and_replicas_stay_identical(tmp_path):
    probe = os.path.join(os.path.dirname(__file__), "horovod_engine_probe.py")
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, probe, str(tmp_path)], timeout=300)
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    assert all(int(r["size"]) == 2 and int(r["iterations"]) == 3 for r in ranks)
    gradients = sorted(k for k in ranks[0] if k.startswith("local_"))
    assert len(gradients) > 20
    for key in gradients:
        i = key.split("_")[1]
        assert not np.allclose(ranks[0][key], ranks[1][key])  # the ranks saw different data
        mean = (ranks[0][key].astype(np.float64) + ranks[1][key]) / 2
        for rank in ranks:
            np.testing.assert_allclose(rank[f"averaged_{i}"], mean, rtol=1e-6, atol=1e-7)
    for key in ranks[0]:
        if key.startswith(("weight_", "slot_")):
            np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
