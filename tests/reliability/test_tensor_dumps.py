"""--dump_tensors: a small DenseNet made to diverge (learning rate 1e4) stops naming the first op
whose output held NaN or Inf, read from TF's debugger dump; TF's own reader (DebugDataReader)
then finds that op's execution with a non-finite health value. Without dumps the message stays
as it was."""
import os

import pytest

from tests import helpers

# A two-block DenseNet (the full net only adds ops to instrument) on synthetic input, with an
# exploding rate: its loss turns NaN/Inf within the dump window.
DIVERGING = ["--input=synthetic", "--model=densenet", "--blocks=2,2", "--growth_rate=8",
             "--stem_filters=16", "--image_size=32", "--dtype=auto",
             "--batch_size=16", "--num_classes=10", "--warmup_epochs=0", "--initial_lr=1e4",
             "--seed=1", "--epochs=1", "--steps_per_epoch=12", "--validation_steps=0",
             "--log_steps=2"]
STOPPED = "train: loss or gradients became NaN or Inf at step "


def last_line(proc):
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    root = tmp_path_factory.mktemp("diverged")
    dumped = helpers.run_train([*DIVERGING, f"--model_dir={root / 'dumped'}",
                                f"--dump_tensors={root / 'dump'}", "--dump_steps=2,10"],
                               timeout=600, check=False)
    plain = helpers.run_train([*DIVERGING, f"--model_dir={root / 'plain'}"], timeout=600,
                              check=False)
    return root / "dump", dumped, plain


@pytest.mark.slow
def test_the_stop_names_the_first_nonfinite_op_of_the_train_step(diverged):
    dump, dumped, _ = diverged
    assert dumped.returncode == 1, dumped.stderr[-3000:]
    line = last_line(dumped)
    assert line.startswith(STOPPED) and "; first op whose output held NaN or Inf: " in line, line
    named = line.split("NaN or Inf: ")[1].split(" ")[0]
    op_name = named.split(":")[0]
    assert op_name.split("/")[0] in ("forward", "gradient_tape", "backward", "allreduce",
                                     "apply"), line  # an op of the train step's phases
    assert f"(tensor dumps in {dump})" in line
    assert "tensor dumps: steps 3-10 into" in dumped.stdout


@pytest.mark.slow
def test_tfs_reader_lists_that_ops_nonfinite_execution(diverged):
    from tensorflow.python.debug.lib import debug_events_reader
    dump, dumped, _ = diverged
    named = last_line(dumped).split("NaN or Inf: ")[1].split(" ")[0]
    op_name, _, slot = named.partition(":")
    with debug_events_reader.DebugDataReader(str(dump)) as reader:
        reader.update()
        assert reader.num_graph_execution_traces() > 0
        digests = {d.op_name for d in reader.graph_op_digests()}
        assert op_name in digests  # an op of the instrumented train step's graph
        traces = [t for t in reader.graph_execution_traces()
                  if t.op_name == op_name and t.output_slot == int(slot or 0)]
        # CONCISE_HEALTH: [tensor id, elements, -inf count, +inf count, nan count]
        assert any(sum(t.debug_tensor_value[2:5]) > 0 for t in traces), \
            [t.debug_tensor_value for t in traces]
        first_bad = next(i for i, t in enumerate(reader.graph_execution_traces())
                         if t.debug_tensor_value and sum(t.debug_tensor_value[2:5]) > 0)
        assert reader.graph_execution_traces()[first_bad].op_name == op_name


@pytest.mark.slow
def test_without_dumps_the_message_is_as_before(diverged):
    _, dumped, plain = diverged
    assert plain.returncode == 1, plain.stderr[-3000:]
    line = last_line(plain)
    step = line[len(STOPPED):].split(";")[0]
    assert line == (f"{STOPPED}{step}; stopped without applying it (last good checkpoint "
                    f"kept)"), line
    assert last_line(dumped).startswith(f"{STOPPED}{step};")  # the same step, dumps or not


@pytest.mark.smoke
def test_a_dump_window_bounds_its_buffer_and_leaves_outside_steps_alone(tmp_path):
    """A finite run with a window of 2 of 6 steps and a buffer of 50 op executions: the dump
    holds at most 50 of them, all from the window's traced step; the window's cost is logged."""
    from tensorflow.python.debug.lib import debug_events_reader
    out = helpers.run_train(["--input=synthetic", f"--model_dir={tmp_path / 'run'}",
                             *helpers.TINY, "--num_classes=10", "--epochs=1",
                             "--steps_per_epoch=6", "--validation_steps=0", "--log_steps=1",
                             f"--dump_tensors={tmp_path / 'dump'}", "--dump_steps=2,4",
                             "--dump_buffer_size=50"]).stdout
    assert "tensor dumps: steps 3-4 into" in out and "CONCISE_HEALTH" in out, out
    assert "img/s inside the window against" in out, out
    with debug_events_reader.DebugDataReader(str(tmp_path / "dump")) as reader:
        reader.update()
        assert 0 < reader.num_graph_execution_traces() <= 50
        for trace in reader.graph_execution_traces():
            names, graph = [], reader.graph_by_id(trace.graph_id)
            while graph is not None:  # the op's graph, then the graphs around it
                names.append(graph.name)
                graph = graph.outer_graph_id and reader.graph_by_id(graph.outer_graph_id)
            assert "_step" in names, names  # inside the traced train step
    records = [r for r in helpers.metrics(tmp_path / "run", timing=True)
               if r["split"] == "tensor_dumps"]
    assert [(r["first_step"], r["step"]) for r in records] == [(4, 4)]
    assert os.path.isdir(tmp_path / "dump")


@pytest.mark.slow
def test_two_workers_dump_on_rank_0_or_on_every_rank(tmp_path):
    """All workers run the window alike (a worker that does not dump still steps one by one and
    checks each step, so the boundary collectives match); rank 0 dumps, or every rank with
    --dump_all_ranks, and each names its own first non-finite op."""
    import sys
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    tiny = ["--input=synthetic", *helpers.TINY, "--num_classes=10", "--initial_lr=1e4",
            "--seed=3", "--epochs=1", "--steps_per_epoch=12", "--validation_steps=0",
            "--dump_steps=2,12", "--stall_timeout=120"]
    for name, extra in (("rank0", []), ("all", ["--dump_all_ranks"])):
        dump = tmp_path / f"dump_{name}"
        proc = subprocess_run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo",
                               *helpers.train_command(f"--model_dir={tmp_path / name}",
                                                      f"--dump_tensors={dump}", *tiny, *extra)])
        assert proc.returncode != 0 and "stalled" not in proc.stdout + proc.stderr, \
            proc.stdout[-3000:] + proc.stderr[-3000:]
        named = [line for line in (proc.stdout + proc.stderr).splitlines()
                 if STOPPED in line and "first op whose output held NaN or Inf" in line]
        if extra:
            assert sorted(os.listdir(dump)) == ["rank_0", "rank_1"]
            assert len(named) == 2, named
        else:
            assert not os.path.exists(dump / "rank_0")
            assert any(f.endswith(".graph_execution_traces") for f in os.listdir(dump))
            assert len(named) == 1 and named[0].startswith("[0]"), named


def subprocess_run(cmd):
    import subprocess
    env = {**os.environ, "PYTHONPATH": helpers.REPO}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env,
                          cwd=helpers.REPO)
