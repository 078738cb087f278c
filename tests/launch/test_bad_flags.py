"""Bad command lines end with one line naming the flag at fault and exit code 1, before any
TensorFlow graph is built."""
import json
import sys

import pytest

from tests import helpers
from tests.helpers import TINY

pytestmark = pytest.mark.smoke


def refused(args, env=None):
    proc = helpers.run_train(args, timeout=120, env=env, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


BAD_FLAGS = [
    (["--model=densenet999"], "flag --model=densenet999: value should be one of"),
    (["--dtype=fp16"], "flag --dtype=fp16: value should be one of"),
    (["--optimizer=lamb"], "flag --optimizer=lamb: value should be one of"),
    (["--batch_size=0"], "--batch_size must be a positive integer"),
    (["--batch_size=-8"], "--batch_size must be a positive integer"),
    (["--epochs=0"], "--epochs must be a positive integer"),
    (["--steps_per_epoch=0"], "--steps_per_epoch must be a positive integer when given"),
    (["--validation_steps=-1"], "--validation_steps must be 0 (off) or positive"),
    (["--validation_freq=0"], "--validation_freq must be a positive integer"),
    (["--initial_lr=0"], "--initial_lr must be positive"),
    (["--dropout_rate=1.5"], "--dropout_rate must be in [0, 1)"),
    (["--jit_compile", "--deterministic"], "XLA has no deterministic max-pool gradient"),
    (["--micro_batches=3"], "--batch_size must be divisible by workers x --micro_batches"),
    # The flag's old name, an alias, is checked alike.
    (["--grad_accum_steps=3"], "--batch_size must be divisible by workers x --micro_batches"),
    (["--ema_decay=1"], "--ema_decay must be in (0, 1)"),
    (["--image_size=16"], "--image_size must be at least 32"),
    (["--profile_steps=5,2"], "--profile_steps must be START,END"),
    (["--dump_tensors=/tmp/d", "--dump_steps=4"], "--dump_steps must be START,END"),
    (["--dump_steps=1,4"], "--dump_steps and --dump_all_ranks need --dump_tensors=DIR"),
    (["--dump_tensors=/tmp/d", "--jit_compile"], "--dump_tensors cannot be --jit_compile"),
    (["--dump_tensors=/tmp/d", "--dump_mode=ALL"], "flag --dump_mode=ALL: value should be one"),
    (["--dump_tensors=/tmp/d", "--dump_buffer_size=0"], "--dump_buffer_size=0"),
    (["--resume_from_epoch=3"], "--resume_from_epoch needs --resume_from_checkpoint_path"),
    (["--model=densenet", "--blocks="], "--model=densenet needs --blocks"),
    (["--resume_from_checkpoint_path=/nowhere/ckpt-1"],
     "--resume_from_checkpoint_path /nowhere/ckpt-1: no such checkpoint"),
    (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
    (["--randaugment=11,2"], "--randaugment: RandAugment magnitude must be in [0, 10]"),
    (["--randaugment=9"], "--randaugment: RandAugment takes M,N[,S] or rand-mM-nN"),
    (["--random_erasing=1.5"], "--random_erasing must be in [0, 1]"),
    (["--mixup_alpha=-1"], "--mixup_alpha must not be negative"),
    (["--mix_prob=2"], "--mix_prob must be in [0, 1]"),
    (["--steps_per_loop=0"], "--steps_per_loop must be auto or a positive integer"),
    (["--steps_per_loop=fast"], "--steps_per_loop must be auto or a positive integer"),
    (["--stop_within=0"], "--stop_within must be a positive integer"),
    (["--intra_op_threads=0"], "--intra_op_threads must be a positive integer when given"),
    (["--dataset_private_threads=-2"], "--dataset_private_threads must be a positive integer"),
    (["--optimizer=lars", "--lars_eta=-0.001"], "--lars_eta must be positive"),
    (["--lars_epsilon=-1"], "--lars_epsilon must not be negative"),
    (["--momentum=1"], "--momentum must be in [0, 1)"),
    (["--clip_grad_norm=0"], "--clip_grad_norm must be positive when given"),
    (["--keep_best=top3"], "flag --keep_best=top3: value should be one of"),
    (["--keep_best=top1_ema"], "--keep_best=*_ema needs --ema_decay"),
    (["--keep_best=top1", "--validation_steps=0"], "--keep_best and --target_accuracy need "
     "evaluations"),
    (["--target_accuracy=0"], "--target_accuracy must be in (0, 1]"),
    (["--target_accuracy=75"], "--target_accuracy must be in (0, 1]"),
    (["--optimizer=lars", "--weight_decay_mode=kernels"],
     "--weight_decay_mode does not apply to --optimizer=lars"),
    (["--input=synthetic", "--randaugment=9,2"],
     "--randaugment and --random_erasing augment decoded images; --input=synthetic has none"),
]


@pytest.fixture(scope="module")
def refusals(small_data, tmp_path_factory):
    """Every BAD_FLAGS command line through launch.train's own entry, in one process
    (tests/launch/refusals.py): its exit code, what it said, and whether it wrote flags.txt."""
    model_dirs = [tmp_path_factory.mktemp("refused") for _ in BAD_FLAGS]
    argvs = [[f"--dataset_dir={small_data}", f"--model_dir={d}", *args]
             for d, (args, _) in zip(model_dirs, BAD_FLAGS)]
    proc = helpers.run_checked([sys.executable, "-m", "tests.launch.refusals"], 300,
                               input=json.dumps(argvs))
    found = json.loads(proc.stdout)
    for result, model_dir in zip(found, model_dirs):
        result["flags_txt"] = (model_dir / "flags.txt").exists()
    return found


@pytest.mark.parametrize("case", range(len(BAD_FLAGS)),
                         ids=[" ".join(args) for args, _ in BAD_FLAGS])
def test_bad_flag_is_named(case, refusals):
    message, found = BAD_FLAGS[case][1], refusals[case]
    assert found["exit"] == 1, found
    assert "Traceback" not in found["stderr"]
    assert message in found["stderr"], found
    assert not found["flags_txt"]  # refused before the run started


def test_missing_dataset_dir_is_named(tmp_path):
    stderr = refused([f"--dataset_dir={tmp_path}/absent", f"--model_dir={tmp_path}/m"])
    assert f"--dataset_dir {tmp_path}/absent does not exist" in stderr


def test_batch_not_divisible_by_workers(small_data, tmp_path):
    stderr = refused([f"--dataset_dir={small_data}", f"--model_dir={tmp_path}",
                      "--batch_size=10"], env={"OMPI_COMM_WORLD_SIZE": "3"})
    assert "--batch_size must be divisible by the number of workers" in stderr


def test_flagfile_with_an_unknown_flag(small_data, tmp_path):
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text("--epochs=2\n--learning_rate=0.1\n")
    stderr = refused([f"--flagfile={flagfile}", f"--dataset_dir={small_data}"])
    assert "Unknown command line flag 'learning_rate'" in stderr


def test_run_on_hpu_without_habana_points_at_build_md(small_data, tmp_path):
    stderr = refused([f"--dataset_dir={small_data}", f"--model_dir={tmp_path}", *TINY,
                      "--run_on_hpu"])
    assert stderr.strip().splitlines()[-1] == (
        "train: --run_on_hpu: the Habana TensorFlow module (habana_frameworks.tensorflow) is "
        "not installed; see BUILD.md, section Gaudi")
