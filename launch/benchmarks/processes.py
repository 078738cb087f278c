"""Running one benchmark variant in a fresh process (so that peaks and caches do not mix) and
reading the JSON line it prints."""
import json
import os
import re
import subprocess
import sys

# A JSON object on a line of its own, or behind horovodrun's "[rank]<stdout>:" prefix.
_JSON_LINE = re.compile(r"^(?:\[\d+\]<stdout>:)?(\{.*\})\s*$")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def environment():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def worker_command(kind, **options):
    """The command that runs `kind`'s worker with `options` (see launch/benchmarks/worker.py)."""
    return [sys.executable, "-m", "launch.benchmarks.worker", kind, json.dumps(options)]


def last_json(command, name):
    """Runs `command` and returns the last JSON object it printed; RuntimeError with its
    stderr's tail if it failed."""
    out = subprocess.run(command, capture_output=True, text=True, env=environment(), cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    found = [m.group(1) for m in map(_JSON_LINE.match, out.stdout.splitlines()) if m]
    if not found:
        raise RuntimeError(f"{name} printed no JSON line:\n{out.stdout[-2000:]}")
    return json.loads(found[-1])
