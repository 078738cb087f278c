"""The run plan (launch/plan.py) and the slot rule (engine/slots.py), in-process: what a worker
count makes of a plan, what the rule refuses, and that the plan is the one reader of the flags."""
import ast
import os

import pytest
from absl import flags

from engine import slots
from launch import plan, train_flags
from tests import helpers


def planned(*args):
    fv = flags.FlagValues()
    train_flags.define(fv, validate=False)
    fv(["train", "--dataset_dir=/nowhere", "--model_dir=/nowhere", *helpers.TINY, *args])
    return plan.from_flags(fv)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(batch_size=8, workers=2), 2),                            # fresh: workers x 1
    (dict(batch_size=8, workers=2, micro_batches=2), 4),           # workers x micro-batches
    (dict(batch_size=8, workers=2, micro_batch_size=1), 8),        # batch / micro-batch size
    (dict(batch_size=8, workers=1, recorded=4), 4),                # a resumed run's slots
    (dict(batch_size=8, workers=4, recorded=4), 4),
    (dict(batch_size=12, workers=4, recorded=3, allow_redeal=True), 4),  # dealt anew
])
def test_the_slot_rule_deals(kwargs, expected):
    assert slots.deal(**kwargs) == expected


@pytest.mark.parametrize("kwargs, words", [
    (dict(batch_size=6, workers=2, recorded=3),
     "2 workers do not divide this run's 3 micro-batch slots (--batch_size=6 in micro-batches "
     "of 2): run it on a worker count that divides 3 (1, 3), or pass --allow_redeal"),
    (dict(batch_size=8, workers=3, micro_batch_size=2),
     "3 workers do not divide this run's 4 micro-batch slots"),
    (dict(batch_size=8, workers=1, micro_batch_size=2, recorded=2),
     "--micro_batch_size=2 makes 4 micro-batch slots, but the run being resumed has 2"),
    (dict(batch_size=8, workers=1, micro_batches=3),
     "--batch_size must be divisible by workers x --micro_batches"),
    (dict(batch_size=8, workers=2, micro_batch_size=2, micro_batches=1, micro_batches_given=True),
     "--micro_batches=1 contradicts --micro_batch_size=2"),
])
def test_the_slot_rule_refuses_in_one_line(kwargs, words):
    with pytest.raises(slots.SlotError, match=None) as refused:
        slots.deal(**kwargs)
    assert words in str(refused.value) and "\n" not in str(refused.value)


def test_a_plan_for_another_worker_count_keeps_its_slots_or_is_refused():
    settled = planned("--micro_batch_size=2", "--seed=3", "--steps_per_epoch=5",
                       "--num_classes=10").settle(
        plan.Settlement(seed=3, dtype="fp32", recorded_slots=None), workers=1)
    assert (settled.slots, settled.micro_batches, settled.micro_batch_size) == (4, 4, 2)
    on_two = settled.for_workers(2)
    assert (on_two.slots, on_two.micro_batches, on_two.workers) == (4, 2, 2)
    with pytest.raises(slots.SlotError, match="3 workers do not divide this run's 4"):
        settled.for_workers(3)


def test_flags_txt_holds_the_settled_values_and_leaves_out_the_micro_batches_per_worker():
    asked = planned("--dtype=auto", "--micro_batches=2")
    settled = asked.settle(plan.Settlement(seed=42, dtype="bf16", recorded_slots=None),
                           workers=1, data=_Counted(train=40, classes=7))
    lines = settled.flagfile().splitlines()
    assert lines == sorted(lines)
    for line in ("--seed=42", "--dtype=bf16", "--steps_per_epoch=5", "--num_classes=7",
                 "--micro_batch_size=4"):
        assert line in lines
    assert not any(line.startswith(("--micro_batches", "--grad_accum_steps", "--dtype=auto"))
                   for line in lines)


class _Counted:
    def __init__(self, *, train, classes):
        self.train, self.num_classes = train, classes

    def num_examples(self, split):
        return self.train


def test_the_plan_is_the_one_reader_of_the_flags():
    """No function under launch/ takes the flag values but the plan's, the flag modules'
    definitions and validators, and launch.benchmark's, which reads its own flags."""
    launch = os.path.join(helpers.REPO, "launch")
    readers = []
    for root, _, files in os.walk(launch):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and node.args.args and \
                        node.args.args[0].arg in ("fv", "flag_values"):
                    readers.append(f"{os.path.relpath(path, launch)}:{node.name}")
    flag_modules = [r for r in readers if r.startswith("train_flags/")]
    assert sorted(set(readers) - set(flag_modules)) == ["benchmark.py:measure",
                                                         "plan.py:from_flags"]
    assert {r.split(":")[1] for r in flag_modules} <= {"define", "_register_validators"}
