"""Shared fixtures: small recipe-format data made by the project's own demo-data writer.

oneDNN is settled first, as every entry point settles it (launch/onednn.py), so that the tests'
own TensorFlow and the commands they start run the same kernels; with --cpu-kind, the session
(and every process it starts) first stands in for that kind of CPU (tests/cpu_kinds.py)."""
import os

import pytest

from launch import onednn
from tests import cpu_kinds


def pytest_addoption(parser):
    parser.addoption("--cpu-kind", choices=sorted(cpu_kinds.KINDS), default=None,
                     help="run as on a CPU of this kind: $DENSENET_CPU_FLAGS set for the tests "
                          "and every process they start (tests/cpu_kinds.py)")


def pytest_configure(config):
    kind = config.getoption("--cpu-kind")
    if kind:
        os.environ.update(cpu_kinds.stand_in(kind))
    import launch.quiet_start  # noqa: F401 - oneDNN settled before TensorFlow loads


def pytest_report_header(config):
    kind = config.getoption("--cpu-kind")
    given = f"stands in for a {kind} CPU" if kind else "this machine's own"
    return f"CPU flags: {given} (a {cpu_kinds.this_cpu()} CPU); {onednn.settled().describe()}"


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """10 classes, 80 training and 30 validation JPEGs of 40 px, as recipe TFRecords."""
    from input import demo_data
    root = tmp_path_factory.mktemp("small_data")
    demo_data.write_demo_data(str(root), train_per_class=8, val_per_class=3, size=40,
                              train_shards=4, val_shards=2)
    return str(root)
