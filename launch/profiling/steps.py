"""Where each captured train step's time went, read from the profiler's trace events.

The loop marks each step inside the window (observe.STEP_MARKER, with its step number) and the
wait for its batch (observe.INPUT_WAIT_MARKER); the train step names its ops by phase
(engine.step.PHASES, and TF puts the backward pass under "gradient_tape/"). The profiler ties
every op to its step (the events' group_id). A step's wall time is then cut into pieces at every
event boundary, and each piece goes to the phases running in it (shared equally when several
run at once). A piece in which nothing runs goes to the phase that ran last when ops of the step
come after it (the executor waiting on that phase, e.g. an asynchronous all-reduce), and to
"other" before the first op and after the last one (dispatch, host code between steps).
"""
import re

from engine.observe import INPUT_WAIT_MARKER, STEP_MARKER
from engine.step import PHASES

COMPONENTS = ("input", *PHASES, "other")
_SCOPE = re.compile(rf"^({'|'.join(PHASES)})(_\d+)?$")


def phase_of(op_name):
    """The phase of an op from its name ("forward/Conv2D", "gradient_tape/forward/Relu/ReluGrad",
    "apply_1/cond/..."), or None for ops outside the train step's phases."""
    top = op_name.split(":", 1)[0].split("/", 1)[0]
    if top == "gradient_tape":
        return "backward"
    match = _SCOPE.match(top)
    return match.group(1) if match else None


_ASYNC_START = "ExecutorState::ProcessAsync::Start"
_ASYNC_DONE = "ExecutorState::ProcessAsync::Done"


def _spans(events):
    """{group_id: step marker event}, {group_id: [(start, end, component)]} in microseconds.
    An asynchronous op (Horovod's all-reduce) runs from its Start event to its Done event."""
    steps, spans, async_ops = {}, {}, {}
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        args = e.get("args", {})
        group = args.get("group_id")
        if group is None:
            continue
        if "step_num" in args and e["name"].split(" ")[0] == STEP_MARKER:
            steps[group] = e
            continue
        if e["name"] in (_ASYNC_START, _ASYNC_DONE):
            async_ops.setdefault((group, args.get("name") or ""), {})[e["name"]] = e["ts"]
            continue
        if e["name"] == INPUT_WAIT_MARKER:
            component = "input"
        elif "long_name" in args:
            component = phase_of(args["long_name"])
        else:
            component = None
        if component:
            spans.setdefault(group, []).append((e["ts"], e["ts"] + e["dur"], component))
    for (group, name), times in async_ops.items():
        if phase_of(name) and len(times) == 2:
            spans.setdefault(group, []).append((times[_ASYNC_START], times[_ASYNC_DONE],
                                                phase_of(name)))
    return steps, spans


def split(start, end, spans):
    """{component: microseconds} of the interval [start, end], adding up to end - start."""
    totals = dict.fromkeys(COMPONENTS, 0.0)
    edges = []
    for s, e, component in spans:
        s, e = max(s, start), min(e, end)
        if e > s:
            edges += [(s, 1, component), (e, -1, component)]
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # ends before starts at one instant
    ops = [t for t, _, c in edges if c != "input"]
    first_op, last_op = (min(ops), max(ops)) if ops else (end, end)
    running = dict.fromkeys(COMPONENTS, 0)
    last_ended, now = "other", start
    for t, delta, component in [*edges, (end, 0, None)]:
        if t > now:
            active = [c for c, n in running.items() if n > 0]
            if active:
                for c in active:
                    totals[c] += (t - now) / len(active)
            elif first_op <= now and t <= last_op:
                totals[last_ended] += t - now
            else:
                totals["other"] += t - now
            now = t
        if component is not None:
            running[component] += delta
            if delta < 0 and component != "input":
                last_ended = component
    return totals


def breakdown(trace):
    """The trace_viewer tool's JSON → [{step, wall_ms, <component>_ms...}] by step number."""
    steps, spans = _spans(trace.get("traceEvents", []))
    rows = []
    for group, marker in steps.items():
        start, end = marker["ts"], marker["ts"] + marker["dur"]
        parts = split(start, end, spans.get(group, []))
        row = {"step": int(marker["args"]["step_num"]), "wall_ms": marker["dur"] / 1e3}
        row.update({f"{c}_ms": parts[c] / 1e3 for c in COMPONENTS})
        rows.append(row)
    return sorted(rows, key=lambda r: r["step"])
