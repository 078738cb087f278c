"""soak (`python -m launch.benchmark --mode=soak`): whether a long run stays flat.

Trains the tests' tiny custom DenseNet (blocks 2,2, growth 8, stem 16, 32 px) with
`python -m launch.train` on generated demo data for `epochs` epochs of `steps_per_epoch` steps,
with evaluation, checkpoints and logging at their defaults (a whole validation pass and a
checkpoint every epoch, 5 checkpoints kept, a record every 100 steps), and samples the training
process's resident memory (VmRSS) as each epoch's validation record appears. Reported:
  rss_mb             each epoch end's RSS;
  rss_slope_mb_per_epoch  the least-squares slope over the second half of the run (the first
                     half holds tracing and the allocator's warm-up);
  model_dir          the files and bytes the run left, by top-level entry;
  images_per_sec     the median of the first logged intervals after the first and of the last
                     ones, and their ratio (a loop that slows down over time shows below 1).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from launch.benchmarks import processes

NET = ["--model=densenet", "--blocks=2,2", "--growth_rate=8", "--stem_filters=16",
       "--image_size=32", "--dtype=fp32", "--batch_size=16", "--warmup_epochs=0"]


def run(*, epochs, steps_per_epoch, train_flags=()):
    from input import demo_data
    with tempfile.TemporaryDirectory() as root:
        data, model_dir = os.path.join(root, "data"), os.path.join(root, "run")
        demo_data.write_demo_data(data, train_per_class=16, val_per_class=8, size=40,
                                  train_shards=4, val_shards=2)
        command = [sys.executable, "-m", "launch.train", f"--dataset_dir={data}",
                   f"--model_dir={model_dir}", *NET, f"--epochs={epochs}",
                   f"--steps_per_epoch={steps_per_epoch}", *train_flags]
        rss, seconds = _train_sampling(command, model_dir, epochs)
        records = _records(model_dir)
        left = _files(model_dir)
    rates = [r["images_per_sec"] for r in records if r["split"] == "train"][1:]
    tail = max(1, len(rates) // 5)
    first, last = statistics.median(rates[:tail]), statistics.median(rates[-tail:])
    half = rss[len(rss) // 2:]
    return {"epochs": epochs, "steps": epochs * steps_per_epoch,
            "train_flags": list(train_flags), "seconds": round(seconds, 1),
            "rss_mb": [round(v, 1) for v in rss],
            "rss_slope_mb_per_epoch": round(_slope(half), 3),
            "rss_second_half_growth_mb": round(half[-1] - half[0], 1),
            "model_dir": left,
            "images_per_sec": {"first": round(first, 1), "last": round(last, 1),
                               "last_to_first": round(last / first, 3)}}


def _train_sampling(command, model_dir, epochs):
    """Runs the training command; the process's RSS in MB at each epoch's validation record."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=processes.environment(), cwd=processes.REPO)
    rss, seen = [], 0
    while proc.poll() is None:
        evaluated = sum(1 for r in _records(model_dir) if r["split"] == "validation")
        if evaluated > seen:
            seen = evaluated
            rss.append(_rss_mb(proc.pid))
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"soak run failed:\n{proc.stderr.read()[-2000:]}")
    if len(rss) < epochs // 2:
        raise RuntimeError(f"soak: sampled {len(rss)} of {epochs} epoch ends (the epochs are "
                           f"too short to catch): give more --soak_steps_per_epoch")
    return rss, time.perf_counter() - started


def _rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _records(model_dir):
    try:
        with open(os.path.join(model_dir, "metrics.jsonl")) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except (OSError, ValueError):
        return []


def _files(model_dir):
    """{top-level entry: {"files": n, "bytes": b}} of what the run left in model_dir."""
    out = {}
    for entry in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, entry)
        paths = [path] if os.path.isfile(path) else [
            os.path.join(d, name) for d, _, names in os.walk(path) for name in names]
        out[entry] = {"files": len(paths), "bytes": sum(os.path.getsize(p) for p in paths)}
    return out


def _slope(values):
    """The least-squares slope of values against their index (0 for fewer than 2)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))
