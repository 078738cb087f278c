"""Where each captured train step's time went, read from the profiler's trace events.

The loop marks each step inside the window (run_format.STEP_MARKER, with its step number) and the
wait for its batch (run_format.INPUT_WAIT_MARKER); the train step names its ops by phase
(run_format.PHASES, and TF puts the backward pass under "gradient_tape/"). A step's ops are
those that run inside its marker. Its wall time is then cut into pieces at every
event boundary, and each piece goes to the phases running in it (shared equally when several
run at once). A piece in which nothing runs goes to the phase that ran last when ops of the step
come after it (the executor waiting on that phase, e.g. an asynchronous all-reduce), and to
"other" before the first op and after the last one (dispatch, host code between steps).
"""
import bisect
import re

from engine.run_format import INPUT_WAIT_MARKER, PHASES, STEP_MARKER

COMPONENTS = ("input", *PHASES, "other")
_SCOPE = re.compile(rf"^({'|'.join(PHASES)})(_\d+)?$")


def is_phase_scope(scope):
    """Whether a name scope is one of the train step's phases ("forward", "apply_1", ...)."""
    return bool(_SCOPE.match(scope))


def phase_of(op_name):
    """The phase of an op from its name ("forward/Conv2D", "gradient_tape/forward/Relu/ReluGrad",
    "apply_1/cond/...", "while/body/_1/while/forward/..." inside gradient accumulation's loop),
    or None for ops outside the train step's phases: its outermost phase scope."""
    for scope in op_name.split(":", 1)[0].split("/")[:-1]:
        if scope == "gradient_tape":
            return "backward"
        match = _SCOPE.match(scope)
        if match:
            return match.group(1)
    return None


_ASYNC_START = "ExecutorState::ProcessAsync::Start"
_ASYNC_DONE = "ExecutorState::ProcessAsync::Done"


def _spans(events):
    """[step marker events], [(start, end, component)] in microseconds. An asynchronous op
    (Horovod's all-reduce) runs from its Start event to its Done event."""
    markers, spans, async_ops = [], [], {}
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        args = e.get("args", {})
        if "step_num" in args and e["name"].split(" ")[0] == STEP_MARKER:
            markers.append(e)
        elif e["name"] in (_ASYNC_START, _ASYNC_DONE):
            async_ops.setdefault((args.get("name") or "", e["name"]), []).append(e["ts"])
        elif e["name"] == INPUT_WAIT_MARKER:
            spans.append((e["ts"], e["ts"] + e["dur"], "input"))
        elif phase_of(args.get("long_name", "")):
            spans.append((e["ts"], e["ts"] + e["dur"], phase_of(args["long_name"])))
    for (name, kind), starts in async_ops.items():
        if kind == _ASYNC_START and phase_of(name):
            dones = sorted(async_ops.get((name, _ASYNC_DONE), []))
            spans += [(s, d, phase_of(name)) for s, d in zip(sorted(starts), dones)]
    return markers, spans


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
    markers, spans = _spans(trace.get("traceEvents", []))
    spans.sort()
    starts = [s for s, _, _ in spans]
    rows = []
    for marker in markers:
        start, end = marker["ts"], marker["ts"] + marker["dur"]
        # Steps inside the window run one at a time and the host waits for each, so a step's
        # ops are those inside its marker (the profiler's own grouping misses ops in loops).
        inside = spans[:bisect.bisect_right(starts, end)]
        parts = split(start, end, [span for span in inside if span[1] > start])
        row = {"step": int(marker["args"]["step_num"]), "wall_ms": marker["dur"] / 1e3}
        row.update({f"{c}_ms": parts[c] / 1e3 for c in COMPONENTS})
        rows.append(row)
    return sorted(rows, key=lambda r: r["step"])
