"""TensorBoard's Profile tab as a user opens it: `tensorboard` from the lane's venv serving a
profiled run, its profile plugin's HTTP API, and headless Chromium (Debian's chromium, which
`make test` installs: launch/build/install_chromium.sh) rendering the tab.

The overview page draws its step-time chart with Google Charts, which it loads from
www.gstatic.com; a machine without internet (like this one) renders the page without that chart.
So the test reads the chart's data from the endpoint the page gets it from, and the rendered page
for the rest: the run in the session list, the overview page and its step-time summary.
"""
import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests import helpers

pytestmark = pytest.mark.serial

CHROMIUM = shutil.which("chromium")
TENSORBOARD = os.path.join(os.path.dirname(sys.executable), "tensorboard")


def get(url):
    with urllib.request.urlopen(url, timeout=60) as answer:
        body = answer.read()
        if answer.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    return body


def chromium(*args, timeout=120):
    assert CHROMIUM, "chromium is missing: make browser (launch/build/install_chromium.sh)"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-dev-shm-usage", "--hide-scrollbars",
                           "--window-size=1400,900", "--virtual-time-budget=30000", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tensorboard") / "run"
    helpers.run_train(["--input=synthetic", f"--model_dir={model_dir}", *helpers.TINY,
                       "--num_classes=10", "--epochs=1", "--steps_per_epoch=8",
                       "--validation_steps=0", "--profile_steps=3,6"], timeout=300)
    report = json.loads(helpers.run_checked(
        [sys.executable, "-m", "launch.profile", str(model_dir), "--format=json"], 300).stdout)
    return model_dir, report


@pytest.fixture(scope="module")
def tensorboard(profiled_run, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("tensorboard_log") / "tensorboard.log", "w+")
    server = subprocess.Popen([TENSORBOARD, "--logdir", str(profiled_run[0]), "--port",
                               str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://localhost:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            get(f"{url}/data/plugin/profile/runs")
            break
        except OSError:
            log.seek(0)
            assert server.poll() is None, f"tensorboard exited:\n{log.read()[-3000:]}"
            assert time.monotonic() < deadline, f"tensorboard not up:\n{log.read()[-3000:]}"
            time.sleep(1)
    yield url
    server.terminate()
    server.wait(timeout=30)
    log.close()


def run_name(report):
    return "train/" + os.path.basename(report["capture"])


@pytest.mark.slow
def test_profile_plugin_lists_the_run_and_serves_its_step_times(tensorboard, profiled_run):
    _, report = profiled_run
    assert run_name(report) in json.loads(get(f"{tensorboard}/data/plugin/profile/runs"))
    tools = json.loads(get(f"{tensorboard}/data/plugin/profile/run_tools?run={run_name(report)}"))
    assert "overview_page" in tools
    # What the overview's step-time chart draws: one row per captured step.
    tables = json.loads(get(f"{tensorboard}/data/plugin/profile/data?run={run_name(report)}"
                            f"&tag=overview_page&host={_host(report)}"))
    table = next(t for t in tables if any(c["id"] == "stepTimeMs" for c in t.get("cols", [])))
    columns = [c["id"] for c in table["cols"]]
    chart = {row["c"][columns.index("stepnum")]["v"]: row["c"][columns.index("stepTimeMs")]["v"]
             for row in table["rows"]}
    assert chart == {f"train {row['step']}": pytest.approx(row["wall_ms"], rel=1e-3)
                     for row in report["steps"]}


def _host(report):
    names = [f for f in os.listdir(report["capture"]) if f.endswith(".xplane.pb")]
    return names[0][:-len(".xplane.pb")]


@pytest.mark.slow
def test_chromium_renders_the_profile_tab_with_the_runs_overview(tensorboard, profiled_run,
                                                                 tmp_path):
    from PIL import Image
    _, report = profiled_run
    # The Profile tab is an iframe of the plugin's page: its DOM, as Chromium rendered it.
    page = chromium("--dump-dom", f"{tensorboard}/data/plugin/profile/index.html")
    assert page.returncode == 0, page.stderr[-2000:]
    dom = page.stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(
        r"<(script|style)[^>]*>.*?</\1>", "", dom, flags=re.S)))
    assert "<overview-page" in dom and "<performance-summary" in dom, text[:2000]
    assert run_name(report) in text and "Overview Page" in text, text[:2000]
    # The summary's mean host compute time per step: xprof's split of the same steps.
    host_ms = float(re.search(r"Host Compute Time \(σ = [\d.]+ ms\) ([\d.]+) ms", text).group(1))
    mean_wall = report["total"]["wall_ms"] / len(report["steps"])
    assert 0.5 * mean_wall <= host_ms <= mean_wall + 0.05, (host_ms, mean_wall)
    # The tab itself, in TensorBoard's own page: a screenshot with the frame rendered in it.
    shot = tmp_path / "profile_tab.png"
    taken = chromium(f"--screenshot={shot}", f"{tensorboard}/#profile")
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    width, height = image.size
    header = [image.getpixel((x, 10)) for x in range(0, width, 50)]
    assert sum(r > 200 and 90 < g < 160 and b < 60 for r, g, b in header) > len(header) // 2, \
        header  # TensorBoard's orange bar
    frame = image.crop((0, 140, width, height))
    dark = sum(1 for r, g, b in frame.getdata() if r + g + b < 200)
    assert dark > 2000, dark  # the frame's text: sessions, tools, performance summary
