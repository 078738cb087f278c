"""A short run writes the files that the engine wrote before its flags-to-run seam was rebuilt
(RunPlan, launch/plan.py and launch/build_run.py): flags.txt line for line, metrics.jsonl record for
record, the same checkpoints with the same variables, the same best.json and machine.json keys.

The reference (run_files_reference.json) was recorded by the code before that change, with
`python -m tests.launch.test_run_files RECORD_DIR` on an AMD EPYC (Zen 3, oneDNN on); numbers
are compared to within what another CPU's float order moves them in four steps of a tiny net.
Re-record it only for a change that means to write other files, and say so in its commit.
"""
import json
import os
import sys

import numpy as np

from tests import helpers

REFERENCE = os.path.join(os.path.dirname(__file__), "run_files_reference.json")
# Every kind of run decision in one short command: slots from --micro_batch_size, a weight
# average, a kept best, step checkpoints, label smoothing, dropout, a fixed seed.
ARGS = ["--epochs=2", "--steps_per_epoch=2", "--micro_batch_size=4", "--ema_decay=0.9",
        "--keep_best=top1", "--checkpoint_steps=1", "--keep_checkpoints=3", "--seed=7",
        "--deterministic", "--dropout_rate=0.1", "--label_smoothing=0.1"]


def snapshot(model_dir, data_dir):
    """What a run wrote, without what no two runs share (times, paths)."""
    model_dir, data_dir = str(model_dir), str(data_dir)

    def portable(text):
        return text.replace(model_dir, "MODEL_DIR").replace(data_dir, "DATA_DIR")

    with open(os.path.join(model_dir, "flags.txt")) as f:
        flag_lines = [portable(line) for line in f.read().splitlines()]
    checkpoints = {}
    folder = os.path.join(model_dir, "checkpoints")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".index"):
            values = helpers.checkpoint_values(os.path.join(folder, name[:-len(".index")]))
            checkpoints[name[:-len(".index")]] = {
                key: [list(np.shape(value)), str(np.asarray(value).dtype)]
                for key, value in sorted(values.items())}
    with open(os.path.join(model_dir, "best", "best.json")) as f:
        best = json.load(f)
    with open(os.path.join(model_dir, "machine.json")) as f:
        machine_keys = sorted(json.load(f))
    return {"flags": flag_lines, "metrics": helpers.metrics(model_dir),
            "checkpoints": checkpoints, "best": {k: portable(str(v)) if isinstance(v, str)
                                                 else v for k, v in best.items()},
            "machine_keys": machine_keys}


def assert_close(actual, expected, where=""):
    """Equal structure and strings; floats within float-order noise (rtol 1e-3)."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(expected, bool):
        np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4, err_msg=where)
    else:
        assert actual == expected, where


def run(small_data, model_dir):
    helpers.run_train(helpers.tiny_run(small_data, model_dir, *ARGS))
    return snapshot(model_dir, small_data)


def test_a_short_run_writes_the_files_it_wrote_before_the_seam_was_rebuilt(small_data,
                                                                           tmp_path):
    with open(REFERENCE) as f:
        reference = json.load(f)
    written = run(small_data, tmp_path / "run")
    assert written["flags"] == reference["flags"]
    assert written["checkpoints"] == reference["checkpoints"]
    assert written["machine_keys"] == reference["machine_keys"]
    # Accuracies over the 30 validation examples are counts: one flipped example is 1/30.
    for record, expected in zip(written["metrics"], reference["metrics"], strict=True):
        for key in ("top1", "top5", "top1_ema", "top5_ema"):
            if key in expected:
                assert abs(record.pop(key) - expected.pop(key)) <= 1 / 30 + 1e-6, key
    assert_close(written["metrics"], reference["metrics"], "metrics")
    assert written["best"]["checkpoint"] == reference["best"]["checkpoint"]
    assert written["best"]["metric"] == reference["best"]["metric"]


if __name__ == "__main__":  # records the reference: python -m tests.launch.test_run_files DIR
    from input import demo_data
    root = sys.argv[1]
    data = os.path.join(root, "data")
    demo_data.write_demo_data(data, train_per_class=8, val_per_class=3, size=40,
                              train_shards=4, val_shards=2)
    recorded = run(data, os.path.join(root, "run"))
    entries = []
    for name, value in sorted(recorded.items()):  # one line per record, checkpoint, flag
        items = ([f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                  for k, v in sorted(value.items())] if isinstance(value, dict)
                 else [json.dumps(v, sort_keys=True) for v in value])
        brackets = "{}" if isinstance(value, dict) else "[]"
        entries.append(f" {json.dumps(name)}: {brackets[0]}\n  " + ",\n  ".join(items)
                       + brackets[1])
    with open(REFERENCE, "w") as out:
        out.write("{\n" + ",\n".join(entries) + "\n}\n")
