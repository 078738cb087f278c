"""The preflight's report: one table (a row per worker, a column per check), the verdicts
beneath it (blockers first), the speed figures, and the same as JSON in model_dir."""
import dataclasses
import json
import os

from engine import files
from launch.preflight import verdicts as judged

REPORT_FILE = "preflight.json"


def table(workers, found):
    rows = [("rank", "host", *judged.CHECKS)]
    for w in workers:
        rank = w["identity"]["rank"]
        rows.append((str(rank), w["identity"]["host"],
                     *(judged.column(found, rank, check) for check in judged.CHECKS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def speed_lines(workers, plan_facts):
    lines = []
    for w in workers:
        s, i, a = w.get("step") or {}, w.get("input") or {}, w.get("all_reduce") or {}
        parts = [f"rank {w['identity']['rank']} ({w['identity']['host']}):"]
        if s.get("fits"):
            parts.append(f"step {s['seconds_per_step'] * 1000:,.0f} ms per micro-batch of "
                         f"{s['micro_batch']} ({s['images_per_sec']:,.1f} img/s), peak memory "
                         f"{s['peak_bytes'] / 2**20:,.0f} MiB")
        if i.get("images_per_sec"):
            parts.append(f"input {i['images_per_sec']:,.1f} img/s")
        if a.get("seconds") is not None and a.get("workers", 1) > 1:
            share = ""
            if s.get("fits"):
                total = s["seconds_per_step"] * plan_facts["micro_batches"] + a["seconds"]
                share = f", {a['seconds'] / total:.0%} of the step"
            parts.append(f"all-reduce of {s.get('parameters', 0):,} gradients "
                         f"{a['seconds'] * 1000:,.1f} ms ({a['gb_per_sec']} GB/s per worker "
                         f"over {a['interface']}{share})")
        if len(parts) > 1:
            lines.append(parts[0] + " " + "; ".join(parts[1:]))
    predicted = judged.predicted_rate(workers, plan_facts)
    if predicted:
        lines.append(f"the whole job: about {predicted:,.1f} img/s at a global batch of "
                     f"{plan_facts['batch_size']}")
    return lines


def text(workers, found, plan_facts):
    out = [table(workers, found), ""]
    for v in found:
        out.append(f"{v.level}: {v.check}: {', '.join(v.hosts)} (rank "
                   f"{', '.join(map(str, v.ranks))}): {v.text}")
    if not any(v.level == judged.BLOCKER for v in found):
        out.append("ready: no blocker on any host")
    out += ["", *speed_lines(workers, plan_facts)]
    return "\n".join(out)


def write(model_dir, workers, found, plan_facts):
    """model_dir/preflight.json (created with model_dir when missing): the findings of every
    worker, the verdicts and the prediction. Returns its path."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, REPORT_FILE)
    files.write_whole(path, json.dumps({
        "ready": not any(v.level == judged.BLOCKER for v in found),
        "verdicts": [dataclasses.asdict(v) for v in found],
        "predicted_images_per_sec": judged.predicted_rate(workers, plan_facts),
        "plan": plan_facts,
        "workers": workers}, indent=1, default=str) + "\n")
    return path
