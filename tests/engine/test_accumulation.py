"""--grad_accum_steps: N micro-batches of batch/N give the step of one batch (on a model
without batch norm), all-reduced once per optimizer step."""
import json
import os
import sys

import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.smoke
PROBE = os.path.join(os.path.dirname(__file__), "accumulation_probe.py")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def compare(out_dir, ranks):
    for rank in range(ranks):
        got = dict(np.load(out_dir / f"rank{rank}.npz"))
        assert int(got["size"]) == ranks and list(got["steps"]) == [3, 3]
        for i in range(2):
            plain, accumulated = got[f"plain_{i}"], got[f"accumulated_{i}"]
            assert np.abs(plain).max() > 0.01  # trained, not still at zero
            np.testing.assert_allclose(accumulated, plain, rtol=1e-6, atol=1e-7)


def test_four_micro_batches_equal_one_batch(tmp_path):
    helpers.run_checked([sys.executable, PROBE, str(tmp_path)], timeout=300)
    compare(tmp_path, 1)


def test_four_micro_batches_equal_one_batch_on_two_workers(tmp_path):
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, PROBE, str(tmp_path)], timeout=300)
    compare(tmp_path, 2)


def test_one_gradient_allreduce_per_optimizer_step(tmp_path):
    """Horovod's timeline of 3 optimizer steps of 4 micro-batches: the gradient group (kernel
    and bias) is reduced 3 times, not 12."""
    timeline = tmp_path / "timeline.json"
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, PROBE, str(tmp_path), "accumulated"], timeout=300,
                        env={"HOROVOD_TIMELINE": str(timeline)})
    text = timeline.read_text().strip().rstrip(",")
    events = json.loads(text + ("]" if not text.endswith("]") else ""))
    names = {e["args"]["name"]: e["pid"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name" and "name" in e["args"]}
    reductions = {}
    for event in events:
        if event.get("ph") == "B" and event.get("name") in ("ALLREDUCE", "NEGOTIATE_ALLREDUCE"):
            reductions.setdefault(event["pid"], []).append(event["name"])
    gradient_tensors = [name for name in names if "allreduce" in name.lower()]
    assert len(gradient_tensors) == 2, names  # the kernel's and the bias's gradient
    for name in gradient_tensors:
        assert reductions[names[name]].count("ALLREDUCE") == 3, (name, reductions)
