"""python -m launch.profile on real captures: the demo model on synthetic input, a deliberately
slow JPEG input, and two Horovod workers with a planted slow rank. The split is checked against
the profiler's own step analysis (xprof's input_pipeline_analyzer), which reads the same capture
another way."""
import json
import os
import re
import subprocess
import sys

import pytest

from tests import helpers

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
PROBE = os.path.join(helpers.REPO, "tests", "launch", "slow_rank_probe.py")
COMPONENTS = ("input", "forward", "backward", "allreduce", "apply", "other")
# The demo model (launch/recipes/demo.flags) on synthetic input: no input cost to speak of.
DEMO_MODEL = ["--input=synthetic", "--model=densenet121", "--image_size=64", "--dtype=auto",
              "--batch_size=32", "--num_classes=10", "--warmup_epochs=0", "--log_steps=2",
              "--validation_steps=0", "--epochs=1", "--steps_per_epoch=12"]


def profile(model_dir, *args):
    return helpers.run_checked([sys.executable, "-m", "launch.profile", str(model_dir), *args],
                               timeout=300).stdout


def profile_json(model_dir, *args):
    return json.loads(profile(model_dir, "--format=json", *args))


def tiny_profile(tmp_path, *args):
    """launch.profile's report of a tiny synthetic run with ARGS (a window among them)."""
    model_dir = tmp_path / "run"
    helpers.run_train(["--input=synthetic", f"--model_dir={model_dir}", *helpers.TINY,
                       "--num_classes=10", "--epochs=1", "--validation_steps=0", *args],
                      timeout=300)
    return profile_json(model_dir)


def assert_parts_add_up(row):
    parts = sum(row[f"{c}_ms"] for c in COMPONENTS)
    assert abs(parts - row["wall_ms"]) <= 0.1 * row["wall_ms"], row
    assert row["forward_ms"] > 0 and row["backward_ms"] > 0 and row["apply_ms"] > 0, row


def xprof_step_times(capture_dir):
    """{step: ms} from the profiler's own input-pipeline analysis of the capture (its step
    time, or on the TF 2.15 plugin, which has no such column, the sum of its parts)."""
    from launch.profiling import capture
    tables = capture.tool_data(capture_dir, "input_pipeline_analyzer")
    for table in tables:
        columns = [c["id"] for c in table.get("cols", [])]
        if "stepnum" in columns:
            rows = [dict(zip(columns, (c.get("v") if c else None for c in row["c"])))
                    for row in table["rows"]]
            return {int(r["stepnum"].split()[-1]): r["stepTimeMs"] if "stepTimeMs" in r
                    else sum(v for k, v in r.items() if k.endswith("TimeMs")) for r in rows}
    raise AssertionError("no step-time table in input_pipeline_analyzer")


@pytest.fixture(scope="module")
def demo_profile(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("profiled") / "run"
    out = helpers.run_train([f"--model_dir={model_dir}", *DEMO_MODEL, "--profile_steps=3,6"],
                            timeout=600).stdout
    assert "profiler: capturing steps 4-6" in out, out
    return model_dir


@pytest.mark.slow
@pytest.mark.serial
def test_report_splits_each_captured_step_of_the_demo_model(demo_profile):
    report = profile_json(demo_profile)
    assert [row["step"] for row in report["steps"]] == [4, 5, 6]
    reference = xprof_step_times(report["capture"])
    for row in report["steps"]:
        assert_parts_add_up(row)
        assert row["wall_ms"] == pytest.approx(reference[row["step"]], rel=0.1), (row, reference)
        assert row["input_ms"] > 0, row
        compute = row["forward_ms"] + row["backward_ms"]
        assert compute > max(row[f"{c}_ms"] for c in ("input", "allreduce", "apply", "other"))
        assert row["allreduce_ms"] == 0  # one process: the average of one is the identity
    assert "forward + backward" in report["advice"]


@pytest.mark.slow
@pytest.mark.serial
def test_top_ops_are_the_profilers_self_times(demo_profile):
    """The 10 ops are the framework_op_stats tool's largest self times, in order, as a share of
    the captured steps' wall time."""
    report = profile_json(demo_profile)
    ops = report["top_ops"]
    assert len(ops) == 10
    assert [op["self_ms"] for op in ops] == sorted((op["self_ms"] for op in ops), reverse=True)
    wall = report["total"]["wall_ms"]
    for op in ops:
        assert op["percent_of_steps"] == pytest.approx(100 * op["self_ms"] / wall)
        assert op["count"] >= 3  # once per captured step at least
    from launch.profiling import capture
    trace = capture.tool_data(report["capture"], "trace_viewer")
    durations = {}
    for e in trace["traceEvents"]:
        name = e.get("args", {}).get("long_name", "").split(":")[0]
        if e.get("ph") == "X" and name:
            durations[name] = durations.get(name, 0.0) + e["dur"] / 1e3
    for op in ops:  # leaf ops: self time is the whole duration of their trace events
        assert op["self_ms"] == pytest.approx(durations[op["name"]], rel=0.02), op


@pytest.mark.slow
@pytest.mark.serial
def test_top_layers_sum_their_ops_trace_time_and_name_the_nets_layers(demo_profile):
    """Each of the 10 layers is a DenseNet-121 layer (as keras.applications names it) or the
    ops outside any layer, and its self time is the trace's time of the ops under its scope."""
    import nets
    from launch.profiling import capture
    from launch.profiling import report as profile_report
    report = profile_json(demo_profile)
    layers = report["top_layers"]
    assert len(layers) == 10
    assert [x["self_ms"] for x in layers] == sorted((x["self_ms"] for x in layers), reverse=True)
    names = {layer.name for layer in nets.build("densenet121").layers_in_order()}
    assert all(op["name"].split("/")[0] in COMPONENTS + ("gradient_tape",)
               for op in report["top_ops"] if op["layer"] != profile_report.OUTSIDE_LAYERS)
    names |= ({name.rsplit("_", 2)[0] for name in names if "_block" in name}  # dense layers
              | {name.rsplit("_", 1)[0] for name in names if name.startswith("pool")})
    assert {x["layer"] for x in layers} <= names | {profile_report.OUTSIDE_LAYERS}
    assert any(x["layer"].endswith("_conv") for x in layers)  # convolutions cost the most
    trace = capture.tool_data(report["capture"], "trace_viewer")
    by_scope = {}
    for e in trace["traceEvents"]:
        name = e.get("args", {}).get("long_name", "").split(":")[0]
        if e.get("ph") == "X" and name:
            scopes = name.split("/")[:-1]
            for layer in layers:
                if layer["layer"] in scopes and layer["layer"] == [
                        s for s in scopes if s in names][-1]:
                    by_scope[layer["layer"]] = by_scope.get(layer["layer"], 0.0) + e["dur"] / 1e3
    for layer in layers:
        if layer["layer"] != profile_report.OUTSIDE_LAYERS:
            # The op table's self times against the trace's event durations: 2% per op (the
            # top-ops test); over a layer's several ops on a loaded machine they drifted 6%
            # apart (an op missed or misplaced would move a layer's sum by a whole op).
            assert layer["self_ms"] == pytest.approx(by_scope[layer["layer"]], rel=0.1), layer


@pytest.mark.smoke
@pytest.mark.parametrize("op_name, layer", [
    # the branch of the step's tf.cond, lowered into the graph (the name seen on a native-bf16
    # CPU, where those ops reached the top list)
    ("gradient_tape/forward/densenet121/cond/then/_3/conv2_block1_1_conv/Conv2DBackpropInput",
     "conv2_block1_1_conv"),
    ("forward/densenet121/cond_1/else/_12/conv3_block2_0_relu/Relu", "conv3_block2_0_relu"),
    ("while/body/_1/forward_1/densenet/conv2_block1_0_bn/FusedBatchNormV3", "conv2_block1_0_bn"),
    ("gradient_tape/while_grad/body/_5/cond_grad/then/_7/pool2_pool/AvgPoolGrad", "pool2_pool"),
    ("cond/then/_0/Identity", None), ("cond_1/else/_12/Relu", None),
    ("while_1/cond/_2/Less", None), ("apply/cond/true/_4/ResourceApplyMomentum", None),
    ("densenet121_1/switch_case/branch0/_9/Mul:0", None),
])
def test_layer_names_never_come_from_control_flow_scopes(op_name, layer):
    from launch.profiling import report as profile_report
    assert profile_report.layer_of(op_name) == (layer or profile_report.OUTSIDE_LAYERS)


@pytest.mark.smoke
def test_compute_advice_fits_the_device_that_ran():
    """bf16 is advised only where the run's device computes it natively; on a device that
    emulates it, a bf16 run is told to use fp32; an old run without machine.json gets neither."""
    from launch.profiling import report as profile_report
    shares = {"input": 0.01, "forward": 0.4, "backward": 0.5, "allreduce": 0.0, "apply": 0.05,
              "other": 0.04}

    def advice(**machine):
        return profile_report.advice(shares, None, {"device": "CPU (X)", **machine} if machine
                                     else None)
    assert "--dtype=bf16, native on CPU (X)" in advice(dtype="fp32", bf16_native=True)
    emulated = advice(dtype="bf16", bf16_native=False)
    assert "--dtype=fp32: CPU (X) emulates bf16" in emulated and "--dtype=bf16" not in emulated
    for quiet in (advice(dtype="fp32", bf16_native=False), advice(dtype="bf16", bf16_native=True),
                  advice()):
        assert "--dtype" not in quiet and "forward + backward" in quiet


@pytest.mark.slow
@pytest.mark.serial
def test_json_round_trips_with_the_table_and_the_plot_is_drawn(demo_profile, tmp_path):
    from PIL import Image
    report = profile_json(demo_profile)
    text = profile(demo_profile, f"--plot={tmp_path / 'steps.png'}")
    rows = {}
    for line in text.splitlines():
        cells = line.split()
        if cells and (cells[0].isdigit() or cells[0] == "all") and len(cells) == 14:
            rows[cells[0]] = cells
    for row in [*report["steps"], {"step": "all", **report["total"]}]:
        cells = rows[str(row["step"])]
        assert float(cells[1]) == round(row["wall_ms"], 2)
        for i, name in enumerate(COMPONENTS):
            assert float(cells[2 + 2 * i]) == round(row[f"{name}_ms"], 2), (name, cells)
            share = 100 * row[f"{name}_ms"] / row["wall_ms"]
            assert float(cells[3 + 2 * i].rstrip("%")) == round(share, 1)
    for op in report["top_ops"]:
        assert f"{op['self_ms']:9.2f} {op['percent_of_steps']:6.1f}%" in text
        assert f"{op['layer']} ({op['name']})" in text
    for layer in report["top_layers"]:
        assert f"{layer['percent_of_steps']:6.1f}% {layer['ops']:6d}  {layer['layer']}" in text
    machine = json.loads((demo_profile / "machine.json").read_text())
    assert report["machine"] == machine and machine["dtype"] in ("fp32", "bf16")
    assert f"--dtype={machine['dtype']}" in (demo_profile / "flags.txt").read_text()
    cost = report["profiling_cost"]
    assert cost["outside_intervals"] >= 2 and cost["outside_images_per_sec"] > 0
    assert f"{cost['window_images_per_sec']:.1f} img/s inside the window" in text
    assert text.splitlines()[-1] == f"advice: {report['advice']}"
    image = Image.open(tmp_path / "steps.png")
    assert image.size[0] >= 400 and len(set(image.convert("RGB").getdata())) > 6  # bars drawn


@pytest.mark.slow
@pytest.mark.serial
def test_slow_input_dominates_and_the_advice_says_so(tmp_path):
    """JPEGs decoded by one thread feed a tiny net. The files are 640 px: at 224 px a batch
    decodes faster than the net trains on it, and at 448 px the decode's lead was thin enough
    that the suite's neighbouring processes reversed it (input 39 ms, backward 52 ms, in one
    CI run); at 640 px it was 190 ms to 54. The window starts once the prefetch buffer, filled
    while the first step traced, has drained."""
    from input import demo_data
    data = tmp_path / "data"
    demo_data.write_demo_data(str(data), train_per_class=16, val_per_class=1, size=640,
                              train_shards=2, val_shards=1)
    model_dir = tmp_path / "run"
    helpers.run_train([f"--dataset_dir={data}", f"--model_dir={model_dir}", *helpers.TINY,
                       "--batch_size=32", "--dataset_num_parallel_calls=1", "--epochs=1",
                       "--steps_per_epoch=16", "--validation_steps=0", "--profile_steps=10,13"],
                      timeout=600)
    report = profile_json(model_dir)
    assert [row["step"] for row in report["steps"]] == [11, 12, 13]
    total = report["total"]
    assert total["input_ms"] == max(total[f"{c}_ms"] for c in COMPONENTS), total
    assert total["input_ms"] > 0.3 * total["wall_ms"], total
    assert "input wait" in report["advice"] and "--dataset_num_parallel_calls" in report["advice"]


@pytest.mark.slow
@pytest.mark.serial
def test_two_workers_report_the_allreduce_and_rank_1s_planted_delay(tmp_path):
    from tests.launch import slow_rank_probe
    model_dir, timeline = tmp_path / "run", tmp_path / "timeline.json"
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable,
                         PROBE, "--input=synthetic", f"--model_dir={model_dir}", *helpers.TINY,
                         "--num_classes=10", "--epochs=1", "--steps_per_epoch=8",
                         "--validation_steps=0", "--profile_steps=3,6",
                         f"--horovod_timeline={timeline}"], timeout=400)
    report = profile_json(model_dir)  # finds the timeline through the run's flags.txt
    sleep_ms = 1e3 * slow_rank_probe.SLEEP_SEC
    assert [s["step"] for s in report["horovod"]] == [4, 5, 6]
    # Rank 0 waits for the sleep less the time its own step took longer than rank 1's (on 2
    # shared cores that can be a few hundred ms): half the sleep is a safe floor.
    for row, hvd in zip(report["steps"], report["horovod"]):
        assert row["allreduce_ms"] >= 0.5 * sleep_ms, row  # rank 0 waits inside the all-reduce
        assert hvd["negotiation_ms"] >= 0.5 * sleep_ms, hvd  # ... for the slowest worker
        assert hvd["negotiation_ms"] > 5 * hvd["transfer_ms"], hvd
    assert "all-reduce" in report["advice"] and "slowest worker" in report["advice"]
    text = profile(model_dir)
    assert re.search(r"^\s+4\s+\d+\.\d+\s+\d+\.\d+", text.split("Horovod timeline")[1], re.M)


@pytest.mark.smoke
def test_a_tiny_capture_reads_on_this_lanes_converter(tmp_path):
    """xprof on the TF 2.21 lane, tensorboard-plugin-profile 2.15 on the TF 2.15 lane; with
    --steps_per_loop=4 the window's steps still run, and are marked, one by one."""
    report = tiny_profile(tmp_path, "--steps_per_epoch=12", "--steps_per_loop=4",
                          "--profile_steps=5,8")
    assert [row["step"] for row in report["steps"]] == [6, 7, 8]
    reference = xprof_step_times(report["capture"])
    for row in report["steps"]:
        assert_parts_add_up(row)
        assert row["wall_ms"] == pytest.approx(reference[row["step"]], rel=0.1)
    assert len(report["top_ops"]) == 10


@pytest.mark.smoke
@pytest.mark.serial
def test_gradient_accumulation_splits_the_micro_batches_ops_by_phase(tmp_path):
    """The micro-batches run in a while loop, whose ops the profiler names under "while/..."
    and does not group by step: they are still read as forward and backward."""
    report = tiny_profile(tmp_path, "--steps_per_epoch=8", "--grad_accum_steps=2",
                          "--profile_steps=3,6")
    assert [row["step"] for row in report["steps"]] == [4, 5, 6]
    for row in report["steps"]:
        assert_parts_add_up(row)
    total = report["total"]
    assert total["forward_ms"] + total["backward_ms"] > 0.5 * total["wall_ms"], total


@pytest.mark.smoke
def test_bad_run_directory_and_capture_give_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, expected in [([str(tmp_path / "missing")], "no such directory"),
                           ([str(empty)], "holds no profile (train with --profile_steps"),
                           ([str(empty), "--horovod_timeline=/nonexistent.json"],
                            "/nonexistent.json: no such file")]:
        proc = subprocess.run([sys.executable, "-m", "launch.profile", *args],
                              capture_output=True, text=True, cwd=helpers.REPO,
                              env={**os.environ, "PYTHONPATH": helpers.REPO})
        assert proc.returncode == 1, proc
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("profile: ") and expected in lines[0], \
            proc.stderr
