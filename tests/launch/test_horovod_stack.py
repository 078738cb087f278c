"""The Horovod build of this lane: compiled with TensorFlow and Gloo, and its collectives exact."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.smoke
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def test_check_build_lists_tensorflow_and_gloo():
    out = subprocess.run([HOROVODRUN, "--check-build"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    lines = {line.strip() for line in out.splitlines()}
    assert "[X] TensorFlow" in lines, out
    assert "[X] Gloo" in lines, out


def test_grouped_allreduce_and_broadcast_across_two_gloo_workers(tmp_path):
    probe = os.path.join(os.path.dirname(__file__), "horovod_probe.py")
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, probe, str(tmp_path)], timeout=300)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    # The same per-rank formulas as the probe, averaged here with numpy.
    def rank_tensors(rank):
        return [np.array([rank + 1.0, 2.0 * (rank + 1), -3.0 * rank]),
                (np.arange(6.0) * (rank + 1) + 0.5 * rank).reshape(2, 3)]
    expected_mean = [np.mean([rank_tensors(r)[i] for r in range(2)], axis=0) for i in range(2)]

    for rank, result in enumerate(results):
        assert (result["rank"], result["size"], result["gloo"]) == (rank, 2, True)
        for got_eager, got_graph, want in zip(result["eager"], result["graph"], expected_mean):
            np.testing.assert_array_equal(np.array(got_eager), want)
            np.testing.assert_array_equal(np.array(got_graph), want)
        np.testing.assert_array_equal(np.array(result["broadcast"]), np.arange(4.0))
