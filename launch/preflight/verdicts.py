"""From every worker's findings (probes.py, gathered by rank 0) to verdicts: each difference
between hosts and each problem of one host named by host, rank and check, as a blocker (the
run would fail or hang) or a warning (it would run, worse than it could); and the speed the
whole job can reach."""
import dataclasses

CHECKS = ("software", "device", "data", "model_dir", "memory", "speed")
BLOCKER, WARNING = "blocker", "warning"


@dataclasses.dataclass(frozen=True)
class Verdict:
    level: str        # BLOCKER or WARNING
    check: str        # one of CHECKS
    ranks: tuple      # the workers it concerns
    hosts: tuple
    text: str


def judge(workers, *, plan_facts):
    """Verdicts, blockers first, from `workers` (one dict per rank, in rank order: identity and
    each probe's findings) and `plan_facts` (micro_batch_size, micro_batches, batch_size,
    workers, elastic)."""
    found = []
    for check in (_software, _device, _data, _model_dir, _memory, _speed):
        found += check(workers, plan_facts)
    return sorted(found, key=lambda v: (v.level != BLOCKER, CHECKS.index(v.check), v.ranks))


def _verdict(level, check, concerned, text):
    return Verdict(level, check, tuple(w["identity"]["rank"] for w in concerned),
                   tuple(dict.fromkeys(w["identity"]["host"] for w in concerned)), text)


def _unfinished(workers, check, probe):
    """Blockers for the workers whose `probe` timed out or raised."""
    out = []
    for w in workers:
        found = w.get(probe) or {}
        if "timeout" in found:
            out.append(_verdict(BLOCKER, check, [w], f"{probe} did not finish in "
                                                     f"{found['timeout']} s"))
        elif "error" in found:
            out.append(_verdict(BLOCKER, check, [w], f"{probe} failed: {found['error']}"))
        elif "skipped" in found:  # its cause is a blocker of another check
            out.append(_verdict(WARNING, check, [w], f"{probe} not run: {found['skipped']}"))
    return out


def _usable(workers, probe):
    return [w for w in workers
            if w.get(probe) and not {"timeout", "error", "skipped"} & set(w[probe])]


def _where(w):
    return f"rank {w['identity']['rank']} on {w['identity']['host']}"


def _software(workers, _):
    out = _unfinished(workers, "software", "software")
    usable = _usable(workers, "software")
    if not usable:
        return out
    first = usable[0]["software"]
    for w in usable[1:]:
        mine = w["software"]
        differences = []
        if mine["python"] != first["python"]:
            differences.append(f"Python {mine['python']} (rank 0's host: {first['python']})")
        for name in sorted(set(first["packages"]) | set(mine["packages"])):
            theirs, ours = first["packages"].get(name), mine["packages"].get(name)
            if theirs != ours:
                differences.append(f"{name} {ours or 'missing'} "
                                   f"(rank 0's host: {theirs or 'missing'})")
        if mine["horovod_build"] != first["horovod_build"]:
            differences.append(f"Horovod built with {mine['horovod_build']} (rank 0's host: "
                               f"{first['horovod_build']})")
        if mine["project"]["source"] != first["project"]["source"]:
            differences.append(f"this project's source {mine['project']['source']} at commit "
                               f"{mine['project']['commit']} (rank 0's host: "
                               f"{first['project']['source']} at {first['project']['commit']})")
        for lock, digest in mine["locks"].items():
            if first["locks"].get(lock) != digest:
                differences.append(f"lock {lock} differs")
        if differences:
            out.append(_verdict(BLOCKER, "software", [w], "; ".join(differences)))
    return out


def _device(workers, _):
    out = _unfinished(workers, "device", "device")
    usable = _usable(workers, "device")
    for w in usable:
        d = w["device"]
        if d["bf16_emulated"]:
            out.append(_verdict(WARNING, "device", [w], f"--dtype=bf16 on {d['device']}, "
                                f"which has {d['bf16_missing']}: emulated, slower than fp32; "
                                f"--dtype=auto uses bf16 only where native"))
    dtypes = {w["device"]["dtype"] for w in usable}
    if len(dtypes) > 1:
        out.append(_verdict(WARNING, "device", usable, "--dtype=auto resolves differently "
                            "by host (" + ", ".join(f"{_where(w)}: {w['device']['dtype']}"
                                                    for w in usable)
                            + "); the run takes rank 0's, emulated or not elsewhere"))
    return out


def _data(workers, _):
    out = _unfinished(workers, "data", "data_listing") + \
        _unfinished(workers, "data", "data_sample")
    usable = _usable(workers, "data_listing")
    for w in usable:
        if "missing" in w["data_listing"]:
            out.append(_verdict(BLOCKER, "data", [w], f"dataset_dir "
                                                      f"{w['data_listing']['missing']} is not "
                                                      f"there"))
    listed = [w for w in usable if "digest" in w["data_listing"]]
    if not listed:
        return out
    first = listed[0]["data_listing"]
    for w in listed[1:]:
        mine = w["data_listing"]
        if mine["digest"] == first["digest"]:
            continue
        out.append(_verdict(BLOCKER, "data", [w], "dataset_dir differs from rank 0's host: "
                            + _listing_difference(first, mine)))
    return out


def _listing_difference(first, mine):
    if first.get("listing") is None or mine.get("listing") is None:
        return (f"{mine['files']} files, {mine['bytes']:,} bytes (rank 0's host: "
                f"{first['files']} files, {first['bytes']:,} bytes)")
    theirs, ours = dict(map(tuple, first["listing"])), dict(map(tuple, mine["listing"]))
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    sized = sorted(n for n in set(theirs) & set(ours) if theirs[n] != ours[n])
    parts = []
    for label, names in (("missing", missing), ("only here", extra), ("another size", sized)):
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                            else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def _model_dir(workers, plan_facts):
    out = _unfinished(workers, "model_dir", "model_dir")
    usable = _usable(workers, "model_dir")
    chief = next((w for w in usable if w["identity"]["rank"] == 0), None)
    if chief is not None:
        m = chief["model_dir"]
        if not m["writable"]:
            out.append(_verdict(BLOCKER, "model_dir", [chief], f"{m['folder']} is not "
                                f"writable{': ' + m['why'] if m.get('why') else ''}"))
        elif m.get("needs") and m["free"] < m["needs"]:
            out.append(_verdict(BLOCKER, "model_dir", [chief], f"{m['folder']} has "
                                f"{_mb(m['free'])} free, the run keeps {_mb(m['needs'])} "
                                f"({plan_facts['keep_checkpoints']} checkpoints + the one "
                                f"being written" + (" + the best" if plan_facts["keep_best"]
                                                   else "")
                                + "): free space or lower --keep_checkpoints"))
    apart = [w for w in usable if w["model_dir"].get("sees_rank0") is False]
    if apart:
        text = ("model_dir is per host (these hosts do not see rank 0's files): a resumed job "
                "must put rank 0 on rank 0's host again (BUILD.md, Several hosts)")
        if plan_facts.get("elastic"):
            out.append(_verdict(BLOCKER, "model_dir", apart, text + "; elastic training may "
                                "move rank 0 to another host and split the checkpoints: use a "
                                "shared model_dir"))
        else:
            out.append(_verdict(WARNING, "model_dir", apart, text))
    return out


def _mb(n):
    return f"{n / 1e6:,.1f} MB"


def _memory(workers, plan_facts):
    out = _unfinished(workers, "memory", "step")
    for w in _usable(workers, "step"):
        s = w["step"]
        if s["fits"]:
            continue
        asked = plan_facts["micro_batch_size"]
        why = s["too_large"][0]["error"] if s["too_large"] else "out of memory"
        if s["micro_batch"]:
            fix = (f"the largest that fits is {s['micro_batch']}: "
                   f"--micro_batch_size={s['micro_batch']} with the same --batch_size, or "
                   f"--recompute")
        else:
            fix = "not even one image fits: a smaller --image_size, or --recompute"
        out.append(_verdict(BLOCKER, "memory", [w], f"a micro-batch of {asked} does not fit "
                            f"({why}); {fix}"))
    return out


def _speed(workers, plan_facts):
    out = _unfinished(workers, "speed", "input") + _unfinished(workers, "speed", "all_reduce")
    for w in workers:
        needed, given = step_rate(w, plan_facts), (w.get("input") or {}).get("images_per_sec")
        if needed and given and given < needed:
            out.append(_verdict(WARNING, "speed", [w], f"input-bound by {needed / given:.1f}x: "
                                f"the input pipeline gives {given:,.0f} img/s, the step takes "
                                f"{needed:,.0f} (more --dataset_num_parallel_calls, cores, or "
                                f"preprocessed data)"))
    return out


def step_rate(w, plan_facts):
    """Images per second one worker's step consumes (its micro-batches, plus the all-reduce
    of each step), or None where the step did not run."""
    s = w.get("step") or {}
    if not s.get("fits"):
        return None
    seconds = s["seconds_per_step"] * plan_facts["micro_batches"] + \
        ((w.get("all_reduce") or {}).get("seconds") or 0)
    return plan_facts["micro_batch_size"] * plan_facts["micro_batches"] / seconds


def predicted_rate(workers, plan_facts):
    """The whole job's img/s: workers step together, so the slowest worker's step or input
    sets the pace. None where any worker's figures are missing."""
    local = plan_facts["micro_batch_size"] * plan_facts["micro_batches"]
    slowest = 0.0
    for w in workers:
        rate = step_rate(w, plan_facts)
        given = (w.get("input") or {}).get("images_per_sec")
        if not rate:
            return None
        rate = min(rate, given) if given else rate
        slowest = max(slowest, local / rate)
    return round(plan_facts["batch_size"] / slowest, 1)


def column(verdicts, rank, check):
    """What a table cell says: the worst verdict on `rank` for `check`."""
    levels = [v.level for v in verdicts if v.check == check and rank in v.ranks]
    if BLOCKER in levels:
        return "BLOCKER"
    return "warning" if levels else "ok"
