"""launch.profile's report: one dict (what --format=json writes), its text form, and its plot."""
import re

from engine import run_format
from launch import run_dir
from launch.profiling import capture, horovod_timeline, steps

TOP_OPS = 10
TOP_LAYERS = 10
# Scopes that wrap layers without being one: the gradient tape; control flow (the loops and
# branches of accumulation and the guard: a tf.cond lowered into the graph names its ops
# "cond/then/_3/...", a while loop "while/body/_1/...", their gradients "cond_grad", ...; which of
# them reach a profile's top list depends on the CPU's kernels); TF's "_1" uniquifiers; the net's
# own scope (nets name theirs after the model: densenet, densenet121, ...).
_CONTROL_FLOW = r"while|body|cond|then|else|true|false|case|switch_case|branch\d*|if|switch|merge"
_NOT_A_LAYER = re.compile(rf"^((gradient_tape|{_CONTROL_FLOW}|densenet\d*)(_grad)?(_\d+)?|_\d+)$")
OUTSIDE_LAYERS = "(no layer)"
# Above these shares of the captured steps' wall time a component is the one to act on.
ADVICE = (
    ("input", 0.10, "input wait is {share:.0%} of the step: raise --dataset_num_parallel_calls, "
                    "or check the disk (python -m launch.benchmark --mode=input measures the "
                    "input pipeline alone)"),
    ("allreduce", 0.25, "the gradient all-reduce is {share:.0%} of the step{who}: look for a "
                        "slow worker, or try --fp16_allreduce and a larger batch per worker"),
    ("other", 0.25, "{share:.0%} of the step is host time outside the step's ops (dispatch, "
                    "Python between steps): try --steps_per_loop=10"),
    ("compute", 0.60, "forward + backward are {share:.0%} of the step: the step is bound by "
                      "the device's compute, not by input or communication; speed comes from "
                      "the compute side ({levers})"),
)


def layer_of(op_name):
    """The layer whose name scope holds an op ("gradient_tape/forward/densenet121/conv5_block16/
    conv5_block16_1_conv/Conv2DBackpropFilter" -> "conv5_block16_1_conv"), or OUTSIDE_LAYERS."""
    for scope in reversed(op_name.split(":", 1)[0].split("/")[:-1]):
        if not (_NOT_A_LAYER.match(scope) or steps.is_phase_scope(scope)):
            return scope
    return OUTSIDE_LAYERS


def op_rows(op_stats, wall_us):
    """The framework_op_stats tool's table (IDLE excluded), by self time, each op with its
    layer."""
    table = op_stats[-1]
    columns = [c["id"] for c in table["cols"]]
    rows = [dict(zip(columns, (cell.get("v") if cell else None for cell in row["c"])))
            for row in table["rows"]]
    rows = [r for r in rows if r.get("type") != "IDLE"]
    rows.sort(key=lambda r: -float(r["total_self_time"]))
    return [{"name": r["operation"], "type": r["type"], "layer": layer_of(r["operation"]),
             "count": int(r["occurrences"]), "self_ms": float(r["total_self_time"]) / 1e3,
             "percent_of_steps": 100.0 * float(r["total_self_time"]) / wall_us}
            for r in rows]


def top_layers(ops, wall_us):
    """Self time summed per layer (forward and backward ops together), the TOP_LAYERS first."""
    layers = {}
    for op in ops:
        layer = layers.setdefault(op["layer"], {"layer": op["layer"], "self_ms": 0.0, "ops": 0})
        layer["self_ms"] += op["self_ms"]
        layer["ops"] += 1
    ranked = sorted(layers.values(), key=lambda layer: -layer["self_ms"])[:TOP_LAYERS]
    for layer in ranked:
        layer["percent_of_steps"] = 100.0 * layer["self_ms"] * 1e3 / wall_us
    return ranked


def compute_levers(machine):
    """What speeds up a compute-bound step on the device that ran (machine.json), never bf16
    where the device emulates it."""
    levers = []
    if machine and machine.get("dtype") == "fp32" and machine.get("bf16_native"):
        levers.append(f"--dtype=bf16, native on {machine['device']}")
    if machine and machine.get("dtype") == "bf16" and machine.get("bf16_native") is False:
        levers.append(f"--dtype=fp32: {machine['device']} emulates bf16")
    levers.append("batch size")
    if machine is None or not machine.get("device", "").startswith("CPU"):
        levers.append("--jit_compile on an accelerator")
    levers.append("the top layers below")
    return ", ".join(levers)


def advice(shares, horovod=None, machine=None):
    """One line for the first component whose share of the step is clearly dominant."""
    for component, limit, text in ADVICE:
        share = (shares["forward"] + shares["backward"] if component == "compute"
                 else shares[component])
        if share > limit:
            who = ""
            if component == "allreduce" and horovod:
                negotiation = sum(s["negotiation_ms"] for s in horovod)
                transfer = sum(s["transfer_ms"] for s in horovod)
                if negotiation > transfer:
                    who = " and most of it is waiting for the slowest worker"
            return text.format(share=share, who=who, levers=compute_levers(machine))
    return None


def build(model_dir, *, run=None, timeline=None):
    """The whole report as one JSON-ready dict."""
    found = capture.find(model_dir, run)
    rows = steps.breakdown(capture.tool_data(found, "trace_viewer"))
    if not rows:
        raise capture.CaptureError(
            f"{found}: holds no marked train step (captured by an older engine, or a window "
            f"that ended before its first step)")
    wall = sum(r["wall_ms"] for r in rows)
    totals = {c: sum(r[f"{c}_ms"] for r in rows) for c in steps.COMPONENTS}
    shares = {c: totals[c] / wall for c in steps.COMPONENTS}
    report = {"model_dir": model_dir, "capture": found,
              "first_step": rows[0]["step"], "last_step": rows[-1]["step"],
              "steps": rows, "total": {"wall_ms": wall, **{f"{c}_ms": totals[c]
                                                           for c in steps.COMPONENTS}},
              "machine": run_dir.read_machine(model_dir)}
    ops = op_rows(capture.tool_data(found, "framework_op_stats"), wall * 1e3)
    report["top_ops"] = ops[:TOP_OPS]
    report["top_layers"] = top_layers(ops, wall * 1e3)
    records = run_format.read_records(model_dir)
    report["profiling_cost"] = run_format.window_cost(records, run_format.PROFILE,
                                                      rows[-1]["step"])
    report["horovod"] = None
    if timeline:
        window = run_format.window_record(records, run_format.PROFILE, rows[-1]["step"])
        first = window.get("segment_first_step", 1) if window else 1
        hvd = horovod_timeline.gradient_steps(timeline, first_step=first)
        report["horovod"] = [s for s in hvd if rows[0]["step"] <= s["step"] <= rows[-1]["step"]]
    report["advice"] = advice(shares, report["horovod"], report["machine"])
    return report


def _percent(part, whole):
    return 100.0 * part / whole if whole else 0.0


def text(report):
    """The report as the terminal shows it."""
    names = steps.COMPONENTS
    lines = [f"profile {report['capture']}: steps {report['first_step']}-"
             f"{report['last_step']}", "",
             "step  wall ms  " + "  ".join(f"{n:>15}" for n in names)]
    for row in [*report["steps"], {"step": "all", **report["total"]}]:
        cells = [f"{row[f'{n}_ms']:7.2f} {_percent(row[f'{n}_ms'], row['wall_ms']):5.1f}%"
                 for n in names]
        lines.append(f"{row['step']!s:>4} {row['wall_ms']:8.2f}  " + "  ".join(cells))
    lines += ["", f"top {len(report['top_ops'])} ops by self time "
                  f"(all captured steps):",
              f"{'self ms':>9} {'% steps':>7} {'count':>6}  {'type':<24} layer (op)"]
    for op in report["top_ops"]:
        lines.append(f"{op['self_ms']:9.2f} {op['percent_of_steps']:6.1f}% {op['count']:6d}  "
                     f"{op['type']:<24} {op['layer']} ({op['name']})")
    lines += ["", f"top {len(report['top_layers'])} layers by self time (forward and "
                  f"backward ops):", f"{'self ms':>9} {'% steps':>7} {'ops':>6}  layer"]
    for layer in report["top_layers"]:
        lines.append(f"{layer['self_ms']:9.2f} {layer['percent_of_steps']:6.1f}% "
                     f"{layer['ops']:6d}  {layer['layer']}")
    if report["horovod"] is not None:
        lines += ["", "gradient all-reduce (Horovod timeline):",
                  "step  negotiation ms  transfer ms  slowest rank"]
        for s in report["horovod"]:
            slowest = "-" if s["slowest_rank"] is None else s["slowest_rank"]
            lines.append(f"{s['step']:>4} {s['negotiation_ms']:15.2f} {s['transfer_ms']:12.2f}"
                         f"  {slowest}")
    cost = report["profiling_cost"]
    lines.append("")
    if cost is None:
        lines.append("cost of profiling: not measured (metrics.jsonl has no record of this "
                     "window)")
    else:
        lines.append("cost of profiling: " + run_format.describe_cost(cost))
    lines.append(f"advice: {report['advice']}" if report["advice"]
                 else "advice: no component clearly dominates")
    return "\n".join(lines)


def plot(report, path):
    """A stacked bar per step of the components' milliseconds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["steps"]
    figure, axes = plt.subplots(figsize=(max(6, 0.4 * len(rows) + 3), 4))
    bottom = [0.0] * len(rows)
    places = list(range(len(rows)))
    for name in steps.COMPONENTS:
        heights = [r[f"{name}_ms"] for r in rows]
        axes.bar(places, heights, bottom=bottom, label=name)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes.set_xticks(places, [str(r["step"]) for r in rows])
    axes.set_xlabel("step")
    axes.set_ylabel("ms")
    axes.set_title(f"where each step's time goes: {report['model_dir']}")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
