"""--init_checkpoint: fine-tuning from a checkpoint of ours or a Keras .h5, to another class
count with --init_skip_head."""
import numpy as np
import pytest

from tests import helpers
from tests.helpers import TINY

# One step at a learning rate too small to move anything: the weights are the initial ones.
FROZEN = ["--epochs=1", "--steps_per_epoch=1", "--validation_steps=0", "--initial_lr=1e-20",
          "--weight_decay=0"]


latest = helpers.latest_checkpoint


def test_our_checkpoint_initializes_a_net_with_another_head(small_data, tmp_path):
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'source'}",
                       *TINY, "--epochs=1", "--steps_per_epoch=2", "--validation_steps=0"])
    source = helpers.checkpoint_values(latest(tmp_path / "source"))
    refused = helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'x'}",
                                 *TINY, *FROZEN, "--num_classes=12",
                                 f"--init_checkpoint={latest(tmp_path / 'source')}"],
                                check=False)
    assert refused.returncode == 1 and "add --init_skip_head" in refused.stderr
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'tuned'}", *TINY,
                       *FROZEN, "--num_classes=12", "--init_skip_head",
                       f"--init_checkpoint={latest(tmp_path / 'source')}"])
    tuned = helpers.checkpoint_values(latest(tmp_path / "tuned"))
    body = [k for k in source if k.startswith("net/") and "classifier" not in k
            and "moving" not in k and "VARIABLE_VALUE" in k]
    assert len(body) > 20
    for key in body:
        np.testing.assert_allclose(tuned[key], source[key], rtol=1e-6, atol=1e-9, err_msg=key)
    head = "net/classifier/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert tuned[head].shape[1] == 12 and source[head].shape[1] == 10


@pytest.mark.slow
def test_keras_h5_initializes_densenet121_for_fine_tuning(small_data, tmp_path):
    from tests.nets import keras_reference as ref
    model = ref.keras_densenet("densenet121", 64, classes=1000, seed=6)
    path = str(tmp_path / "densenet121.h5")
    ref.save_keras2_h5(model, path)
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'tuned'}",
                       "--model=densenet121", "--image_size=64", "--batch_size=4",
                       "--dtype=fp32", *FROZEN, f"--init_checkpoint={path}",
                       "--init_skip_head"], timeout=600)
    tuned = helpers.checkpoint_values(latest(tmp_path / "tuned"))
    stem = "conv1_conv" if ref.KERAS_MAJOR >= 3 else "conv1/conv"
    kernel = model.get_layer(stem).get_weights()[0]
    np.testing.assert_allclose(tuned["net/stem_conv/kernel/.ATTRIBUTES/VARIABLE_VALUE"], kernel,
                               rtol=1e-6, atol=1e-9)
    assert tuned["net/classifier/kernel/.ATTRIBUTES/VARIABLE_VALUE"].shape == (1024, 10)
