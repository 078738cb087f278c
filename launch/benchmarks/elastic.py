"""elastic (`python -m launch.benchmark --mode=elastic`): what elastic training costs when no
worker changes, i.e. what its commits cost.

Each round trains the same run twice with `python -m launch.train` under `horovodrun -np 2` on
this host, in the order swapped every round: once in elastic mode (`--min-np 1 --max-np 2`, a
discovery script listing localhost:2, `--network-interfaces lo`) and once not. The input is
synthetic (no I/O to share the cores with), there is no evaluation, and the run logs 5 times
(each log is a boundary, so a commit: more commits than at the default cadence of --log_steps=100
and a stop check every 15 s). A run's rate is the median of its logged intervals' images/s after
the first (which holds the tracing). Reported: both medians and the median of the rounds'
elastic / plain ratios (paired, so the machine's drift between rounds cancels). --model=densenet
is the tests' tiny custom net (blocks 2,2, growth 8, stem 16).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from launch.benchmarks import processes

LOGS = 5


def _rate(model_dir):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    rates = [r["images_per_sec"] for r in records if r.get("split") == "train"][1:]
    if not rates:
        raise RuntimeError(f"elastic benchmark: no timed interval in {model_dir}")
    return statistics.median(rates)


def _train(*, elastic, model, image_size, batch_size, steps, root):
    model_dir = tempfile.mkdtemp(dir=root)
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    if elastic:
        script = os.path.join(root, "discover.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho localhost:2\n")
        os.chmod(script, 0o755)
        launcher = [horovodrun, "-np", "2", "--min-np", "1", "--max-np", "2",
                    "--host-discovery-script", script, "--gloo", "--network-interfaces", "lo"]
    else:
        launcher = [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo"]
    command = [*launcher, sys.executable, "-m", "launch.train", "--input=synthetic",
               f"--model_dir={model_dir}", f"--model={model}", f"--image_size={image_size}",
               f"--batch_size={batch_size}", "--dtype=fp32", "--num_classes=1000",
               "--epochs=1", f"--steps_per_epoch={steps}", "--validation_steps=0",
               f"--log_steps={max(1, steps // LOGS)}", "--warmup_epochs=0", "--seed=1"]
    if model == "densenet":
        command += ["--blocks=2,2", "--growth_rate=8", "--stem_filters=16"]
    out = subprocess.run(command, capture_output=True, text=True, env=processes.environment(),
                         cwd=processes.REPO)
    if out.returncode != 0:
        raise RuntimeError(f"elastic benchmark ({'elastic' if elastic else 'plain'}) "
                           f"failed:\n{out.stdout[-1500:]}\n{out.stderr[-1500:]}")
    return _rate(model_dir)


def run(*, model, image_size, batch_size, steps, repeats):
    rates = {True: [], False: []}
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(repeats):
            for elastic in ((True, False) if round_ % 2 else (False, True)):
                rates[elastic].append(_train(elastic=elastic, model=model,
                                             image_size=image_size, batch_size=batch_size,
                                             steps=steps, root=root))
            print(f"elastic: round {round_ + 1}: elastic {rates[True][-1]:.2f} img/s, plain "
                  f"{rates[False][-1]:.2f} img/s", file=sys.stderr)
    ratios = [e / p for e, p in zip(rates[True], rates[False])]
    return {"mode": "elastic", "model": model, "image_size": image_size,
            "global_batch": batch_size, "workers": 2, "steps": steps, "rounds": repeats,
            "elastic_images_per_sec": round(statistics.median(rates[True]), 2),
            "plain_images_per_sec": round(statistics.median(rates[False]), 2),
            "elastic_to_plain": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios]}
