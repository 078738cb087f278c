"""Shared fixtures: small recipe-format data made by the project's own demo-data writer.

oneDNN is settled first, as every entry point settles it (launch/onednn.py), so that the tests'
own TensorFlow and the commands they start run the same kernels."""
import launch.quiet_start  # noqa: F401 - first: oneDNN settled before TensorFlow loads

# isort: split
import pytest

from input import demo_data


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """10 classes, 80 training and 30 validation JPEGs of 40 px, as recipe TFRecords."""
    root = tmp_path_factory.mktemp("small_data")
    demo_data.write_demo_data(str(root), train_per_class=8, val_per_class=3, size=40,
                              train_shards=4, val_shards=2)
    return str(root)
