"""launch.benchmark runs end to end and reports what it measured (never how fast: speed is not
asserted in tests)."""
import json
import sys

import pytest

from tests import helpers


def benchmark(*args):
    out = helpers.run_checked([sys.executable, "-m", "launch.benchmark", *args], timeout=600)
    return json.loads(out.stdout[out.stdout.index("{"):])


@pytest.mark.parametrize("model, blocks", [("densenet121", (6, 12, 24, 16)),
                                           ("densenet169", (6, 12, 32, 32))])
def test_conv_floor_times_every_convolution_of_the_net(model, blocks):
    """The floor is read from the traced graph: stem + two per dense layer + one per transition."""
    got = benchmark("--mode=conv_floor", f"--model={model}", "--image_size=32",
                    "--batch_size=2", "--steps=2")
    assert got["convs"] == 1 + 2 * sum(blocks) + len(blocks) - 1
    # 3x3 convs share one shape per block; 1x1 convs differ by input width, 7x7 stem: 1.
    assert got["distinct_convs"] == 1 + len(blocks) + sum(blocks) + len(blocks) - 1
    parts = got["seconds_per_step"]
    assert all(v > 0 for v in parts.values())
    assert got["floor_seconds_per_step"] == pytest.approx(sum(parts.values()), abs=2e-3)
    assert got["ceiling_images_per_sec"] == pytest.approx(2 / got["floor_seconds_per_step"],
                                                          rel=1e-2)


def test_input_mode_measures_each_variant_and_the_slot_streams():
    got = benchmark("--mode=input", "--input_images=64", "--input_batches=5", "--repeats=1",
                    "--image_size=32", "--batch_size=8")
    rates, ratios = got["images_per_sec"], got["ratio_to_plain"]
    assert set(rates) == {"plain", "randaugment_m9_n2", "randaugment_erasing",
                          "randaugment_erasing_mix", "slot_streams_2", "slot_streams_4",
                          "bare_loop"}
    for name, value in rates.items():
        assert value > 0
        assert ratios[name] == pytest.approx(value / rates["plain"], abs=2e-3)


@pytest.mark.slow
def test_train_mode_measures_the_engine_against_its_ceiling_and_keras_fit_in_one_command():
    """One run for both (each builds and traces a DenseNet-121): the engine against its
    convolutions' ceiling, and beside Keras `fit`."""
    result = benchmark("--mode=train", "--keras_fit", "--image_size=32", "--batch_size=2",
                       "--steps=2", "--repeats=1", "--dtype=fp32")["fp32"]
    assert result["engine_images_per_sec"] > 0 and result["tf"]
    assert result["conv_ceiling_images_per_sec"] > 0
    assert result["engine_to_conv_ceiling"] == pytest.approx(
        result["engine_images_per_sec"] / result["conv_ceiling_images_per_sec"], rel=2e-2)
    assert result["keras_fit_images_per_sec"] > 0
    assert result["keras"].startswith("keras") and result["keras"].endswith("_fit")
    assert result["engine_to_keras_fit"] == pytest.approx(
        result["engine_images_per_sec"] / result["keras_fit_images_per_sec"], rel=2e-2)
    assert result["keras_fit_to_conv_ceiling"] == pytest.approx(
        result["keras_fit_images_per_sec"] / result["conv_ceiling_images_per_sec"], rel=2e-2)


def test_keras_fit_is_refused_outside_train_mode():
    proc = helpers.run_unchecked([sys.executable, "-m", "launch.benchmark", "--mode=input",
                                  "--keras_fit"], timeout=120)
    assert proc.returncode != 0
    assert "--keras_fit is for --mode=train" in proc.stderr


def test_loop_overhead_reports_trainer_and_bare_loop_for_each_row():
    got = benchmark("--mode=loop_overhead", "--steps=60", "--repeats=1", "--horovod=false")
    for row in ("default", "steps_per_loop_1", "steps_per_loop_50"):
        result = got[row]
        assert result["trainer_steps_per_sec"] > 0 and result["bare_loop_steps_per_sec"] > 0
        assert result["ratio_median"] == pytest.approx(
            result["trainer_steps_per_sec"] / result["bare_loop_steps_per_sec"], rel=0.05)
    # measured paired in its own process (one round here), so not the rows' quotient
    assert isinstance(got["default_vs_50"], float) and got["default_vs_50"] > 0


def test_a_workers_json_line_is_found_behind_horovodruns_prefix():
    """horovodrun prints a rank's stdout as "[0]<stdout>:...": the horovodrun -np 2 row of
    loop_overhead reads its JSON from such a line (it found none before)."""
    from launch.benchmarks import processes
    script = "print('starting'); print('[0]<stdout>:{\"trainer\": [1.5]}')"
    assert processes.last_json([sys.executable, "-c", script], "probe") == {"trainer": [1.5]}
    with pytest.raises(RuntimeError, match="printed no JSON line"):
        processes.last_json([sys.executable, "-c", "print('nothing')"], "probe")


def test_elastic_mode_trains_the_same_run_under_each_launcher_and_mode():
    got = benchmark("--mode=elastic", "--model=densenet", "--image_size=32", "--batch_size=8",
                    "--steps=10", "--repeats=1")
    assert got["mode"] == "elastic" and got["workers"] == 2 and got["rounds"] == 1
    rates = {v: got[f"{v}_images_per_sec"] for v in ("plain", "off", "elastic")}
    assert all(r > 0 for r in rates.values())
    assert got["per_round"] == {v: [r] for v, r in rates.items()}
    for name, (a, b) in {"engine_elastic_to_off": ("elastic", "off"),
                         "launcher_elastic_to_plain": ("off", "plain"),
                         "elastic_to_plain": ("elastic", "plain")}.items():
        assert got[name] == pytest.approx(rates[a] / rates[b], rel=0.01), name
