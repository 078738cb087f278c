"""`python -m launch.preflight` (densenet-preflight): the training command's flags, started the
way training starts; see launch/preflight/__init__.py."""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import os
import sys

from absl import app, flags, logging

from engine import distributed
from launch import build_run, hardware, plan, train_flags
from launch.errors import ONE_LINE_ERRORS, report
from launch.preflight import probes, roll_call
from launch.preflight import report as reports
from launch.preflight import verdicts as judged

FLAGS = flags.FLAGS
train_flags.define(FLAGS)
flags.DEFINE_integer("preflight_check_seconds", 60, "Preflight: the time limit of each probe "
                     "on each worker; a probe that takes longer is reported as a blocker.",
                     lower_bound=5)
flags.DEFINE_integer("preflight_input_seconds", 5, "Preflight: how long each worker reads "
                     "the input pipeline to measure its rate.", lower_bound=1)

EXIT_READY, EXIT_BLOCKED, EXIT_NO_ANSWER, EXIT_ERROR = 0, 1, 3, 7
COMMAND = "preflight"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.ERROR)
    try:
        planned = plan.from_flags(FLAGS)
        # Where no launcher's store serves the roll call (mpirun), Horovod's stall check is
        # what names the ranks missing from a collective: soon, here.
        os.environ.setdefault("HOROVOD_STALL_CHECK_TIME_SECONDS", "10")
        backend = build_run.start_backend(planned)
        facts = plan_facts(planned, backend)  # the slot rule refuses here as training would
        return check_every_worker(planned, backend, facts)
    except ONE_LINE_ERRORS as error:
        return report(COMMAND, error)
    except Exception as error:  # noqa: BLE001 - every failure ends in one line
        if distributed.is_collective_failure(error):
            return report(COMMAND, f"a worker stopped answering during the preflight: "
                                   f"{probes.said(error)}", EXIT_NO_ANSWER)
        return report(COMMAND, f"stopped by an error: {probes.said(error)}", EXIT_ERROR)


def check_every_worker(planned, backend, facts):
    """Every worker's probes, gathered; rank 0 prints and writes the report. The exit code,
    the same on every worker."""
    limit = FLAGS.preflight_check_seconds
    mine = {"identity": probes.identity(backend.rank)}
    roll = roll_call.RollCall(rank=backend.rank, size=backend.size,
                              host=mine["identity"]["host"], limit=limit,
                              overall=8 * limit + 60, store=roll_call.Store.from_environment(),
                              on_silence=_no_answer)
    roll.waiting("the first gather (every worker started)")
    backend.gather(mine["identity"])
    mine.update(probe_this_worker(planned, backend, limit=limit, roll=roll,
                                  input_seconds=FLAGS.preflight_input_seconds))
    roll.waiting("gathering every worker's findings")
    workers = backend.gather(mine)
    roll.done()
    found = judged.judge(workers, plan_facts=facts)
    if backend.is_chief:
        print(reports.text(workers, found, facts))
        try:
            print(f"report: {reports.write(planned.model_dir, workers, found, facts)}")
        except OSError as error:
            print(f"report not written: {error}")
    return EXIT_BLOCKED if any(v.level == judged.BLOCKER for v in found) else EXIT_READY


def _no_answer(line):
    """A worker does not answer (see roll_call): one line, exit 3, from the watching thread
    while the main one waits in a collective that will never complete."""
    sys.stderr.write(f"{COMMAND}: {line}\n")
    sys.stderr.flush()
    os._exit(EXIT_NO_ANSWER)


def probe_this_worker(planned, backend, *, limit, roll, input_seconds):
    """Every probe on this worker, each bounded by `limit` seconds; the one collective step
    (the all-reduce) and the shared-model_dir check run with every worker."""
    mine = {}
    for name, probe, args in (("software", probes.software, ()),
                              ("device", probes.device, (planned,)),
                              ("data_listing", probes.data_listing, (planned,))):
        roll.stage(name)
        mine[name] = probes.bounded(probe, limit, *args)
    roll.stage("opening the input")
    opened = {}
    found = probes.bounded(_open_and_settle, limit, planned, backend, opened)
    settled, data = opened.get("plan"), opened.get("data")
    cause = found.get("error") or (f"timed out after {found['timeout']} s" if "timeout" in found
                                   else "")
    missing = {"skipped": f"the data did not open and settle the plan ({cause})"}
    roll.stage("data_sample")
    mine["data_sample"] = probes.bounded(probes.data_sample, limit, settled, data) \
        if settled else {"error": cause}
    roll.stage("step")
    mine["step"] = probes.bounded(probes.step, limit, settled) if settled else missing
    checkpoint_bytes = mine["step"].get("checkpoint_bytes", 0)
    roll.stage("model_dir")
    mine["model_dir"] = probes.bounded(probes.model_dir_space, limit, planned,
                                       checkpoint_bytes, writes=backend.is_chief)
    roll.waiting("the shared model_dir check")
    mine["model_dir"]["sees_rank0"] = _sees_rank0_file(backend, mine["model_dir"])
    roll.stage("input")
    mine["input"] = probes.bounded(probes.input_rate, limit, settled, data,
                                   worker=backend.rank, workers=backend.size,
                                   seconds=input_seconds) if settled else missing
    roll.waiting("the all_reduce probe")
    parameters = backend.broadcast_object(mine["step"].get("parameters") or 1_000_000)
    mine["all_reduce"] = probes.bounded(probes.all_reduce, limit, backend, parameters)
    return mine


def _open_and_settle(planned, backend, opened):
    """The input module and the plan settled as this worker sees it (no collective: each
    host's own answer, e.g. the dtype --dtype=auto gives here)."""
    data = build_run.open_input(planned, log=lambda *a, **k: None)
    mine = plan.local_settlement(planned, bf16=hardware.bf16_support(
        hpu=planned.machine.run_on_hpu), is_chief=backend.is_chief, log=lambda *a, **k: None)
    opened["data"] = data
    opened["plan"] = planned.settle(mine, workers=backend.size, data=data)
    return {}


def _sees_rank0_file(backend, model_dir):
    """Whether this worker sees the file rank 0's model_dir probe made (a shared file system),
    removed once every worker has looked; None where rank 0 could not make one."""
    marker = backend.broadcast_object(model_dir.pop("marker", None))
    seen = os.path.exists(marker) if marker else None
    backend.gather(seen)  # everyone has looked before rank 0 removes it
    if backend.is_chief and marker:
        os.remove(marker)
    return seen


def plan_facts(planned, backend):
    slots = planned.deal_slots(backend.size)
    return {"batch_size": planned.batch_size, "workers": backend.size,
            "micro_batches": slots // backend.size,
            "micro_batch_size": planned.batch_size // slots,
            "keep_checkpoints": planned.loop.keep_checkpoints,
            "keep_best": bool(planned.loop.keep_best),
            "elastic": distributed.launched_elastic()}


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)
