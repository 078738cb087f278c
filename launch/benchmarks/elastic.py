"""elastic (`python -m launch.benchmark --mode=elastic`): what elastic training costs when no
worker changes: the engine's commits, and Horovod's elastic launcher apart.

Each round trains the same run three times with `python -m launch.train` on 2 workers on this
host, in an order rotated every round:
  plain     `horovodrun -np 2 -H localhost:2`;
  off       horovodrun in elastic mode (`--min-np 1 --max-np 2`, a discovery script listing
            localhost:2, `--network-interfaces lo`) with `--elastic=off`: the engine trains as
            under the plain launcher, so this is the launcher's own cost (its driver runs the
            discovery script every second, on the training host here);
  elastic   the same launcher, elastic training: commits at the default cadence (each stop
            check, about every 15 s, and before the checkpoint).
The input is synthetic (no I/O to share the cores with), there is no evaluation, and each run
logs 5 times: its rate is the median of its logged intervals' images/s after the first (which
holds the tracing). Reported: each variant's median, and the medians of the rounds' paired
ratios (the machine's drift between rounds cancels): `engine_elastic_to_off` (what elastic
training itself costs), `launcher_elastic_to_plain` (what Horovod's elastic launcher costs) and
`elastic_to_plain` (both). --model=densenet is the tests' tiny custom net (blocks 2,2, growth 8,
stem 16).
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


VARIANTS = ("plain", "off", "elastic")


def _train(*, variant, model, image_size, batch_size, steps, root):
    model_dir = tempfile.mkdtemp(dir=root)
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    if variant != "plain":
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
    if variant == "off":
        command.append("--elastic=off")
    out = subprocess.run(command, capture_output=True, text=True, env=processes.environment(),
                         cwd=processes.REPO)
    if out.returncode != 0:
        raise RuntimeError(f"elastic benchmark ({variant}) failed:\n{out.stdout[-1500:]}\n"
                           f"{out.stderr[-1500:]}")
    return _rate(model_dir)


def run(*, model, image_size, batch_size, steps, repeats):
    rates = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(repeats):
            shift = round_ % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                rates[variant].append(_train(variant=variant, model=model,
                                             image_size=image_size, batch_size=batch_size,
                                             steps=steps, root=root))
            print(f"elastic: round {round_ + 1}: " + ", ".join(
                f"{v} {rates[v][-1]:.2f} img/s" for v in VARIANTS), file=sys.stderr)

    def ratio(a, b):
        return round(statistics.median(x / y for x, y in zip(rates[a], rates[b])), 3)
    return {"mode": "elastic", "model": model, "image_size": image_size,
            "global_batch": batch_size, "workers": 2, "steps": steps, "rounds": repeats,
            **{f"{v}_images_per_sec": round(statistics.median(rates[v]), 2) for v in VARIANTS},
            "engine_elastic_to_off": ratio("elastic", "off"),
            "launcher_elastic_to_plain": ratio("off", "plain"),
            "elastic_to_plain": ratio("elastic", "plain"),
            "per_round": {v: [round(r, 2) for r in rates[v]] for v in VARIANTS}}
