"""The gradient all-reduce's side of each step, from Horovod's timeline (--horovod_timeline).

The timeline is Chrome trace JSON that Horovod's coordinator writes while the job runs (so it
may lack its closing bracket): one "process" per tensor, NEGOTIATE_ALLREDUCE spans holding one
marker per rank as it becomes ready, then the ALLREDUCE span (fusion-buffer copies and the
transfer itself). The train step's gradients are one group whose tensors the step names under
its all-reduce scope; the group is reduced once per optimizer step, in step order.
"""
import json

from engine.run_format import ALLREDUCE
from launch.errors import CommandError

GRADIENT_SCOPE = ALLREDUCE + "/"


class TimelineError(CommandError):
    """A timeline that cannot be read; the message names the file."""


def read_events(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as e:
        raise TimelineError(f"{path}: {e.strerror} (the Horovod timeline)") from None
    text = text.rstrip(",")
    if not text.endswith("]"):
        text += "]"
    try:
        events = json.loads(text)
    except ValueError as e:
        raise TimelineError(f"{path}: not a Horovod timeline (bad JSON: {e})") from None
    if not isinstance(events, list):
        raise TimelineError(f"{path}: not a Horovod timeline (expected a JSON list of events)")
    return events


def _occurrences(events):
    """{tensor name: [{negotiate: (b, e), ready: {rank: ts}, allreduce: (b, e)}, ...]}"""
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"
             and "name" in e.get("args", {})}
    stacks, out = {}, {}
    for e in events:
        pid = e.get("pid")
        name = names.get(pid, "")
        if not name.startswith(GRADIENT_SCOPE):
            continue
        stack = stacks.setdefault(pid, [])
        runs = out.setdefault(name, [])
        if e.get("ph") == "B":
            if e.get("name") == "NEGOTIATE_ALLREDUCE":
                runs.append({"ready": {}})
            stack.append((e.get("name"), e["ts"]))
        elif e.get("ph") == "E" and stack:
            kind, begin = stack.pop()
            if kind in ("NEGOTIATE_ALLREDUCE", "ALLREDUCE") and runs:
                runs[-1][kind] = (begin, e["ts"])
        elif e.get("ph") == "X" and stack and stack[-1][0] == "NEGOTIATE_ALLREDUCE" and runs:
            if str(e.get("name", "")).isdigit():
                runs[-1]["ready"][int(e["name"])] = e["ts"]
    return out


def gradient_steps(path, first_step=1):
    """Per optimizer step (numbered from `first_step`, the run segment's first): the gradient
    group's negotiation time (from the first rank ready to the last: waiting for the slowest
    worker), the slowest rank, and the transfer time, in ms."""
    runs = _occurrences(read_events(path))
    if not runs:
        raise TimelineError(f"{path}: holds no gradient all-reduce (tensors named "
                            f"{GRADIENT_SCOPE}...); was it written by this engine's train step?")
    count = min(len(r) for r in runs.values())
    steps = []
    for i in range(count):
        group = [r[i] for r in runs.values()]
        if not all("NEGOTIATE_ALLREDUCE" in g and "ALLREDUCE" in g for g in group):
            break  # the job ended inside this step's reduction
        ready = {}
        for g in group:
            for rank, ts in g["ready"].items():
                ready[rank] = max(ready.get(rank, ts), ts)
        negotiate = (min(g["NEGOTIATE_ALLREDUCE"][0] for g in group),
                     max(g["NEGOTIATE_ALLREDUCE"][1] for g in group))
        transfer = (min(g["ALLREDUCE"][0] for g in group), max(g["ALLREDUCE"][1] for g in group))
        steps.append({"step": first_step + i,
                      "negotiation_ms": (negotiate[1] - negotiate[0]) / 1e3,
                      "slowest_rank": max(ready, key=ready.get) if ready else None,
                      "transfer_ms": (transfer[1] - transfer[0]) / 1e3})
    return steps
