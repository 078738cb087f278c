"""Where the engine's step and Keras' fit spend their time, by kind of op: each trains the same
synthetic batch in its own process with the timed steps captured by TensorFlow's profiler, and
the captures' per-op self times (the profiler's framework_op_stats tool) are summed by kind and
by op type, in ms per step. Keras lives in tests/ only, so this is an entry point of its own:

    python -m tests.benchmarks.op_types --model=densenet121 --image_size=224 --steps=3

The kinds: convolutions (forward and both gradients), batch norm (the fused kernels and their
gradients, or the elementwise ops of an unfused batch norm, found by its layer's `_bn` scope),
ReLU, concatenation (ConcatV2 and the slices of its gradient), pooling, and everything else by
op type (the loss, the L2 penalty, AddN, the update, the moving statistics)."""
import argparse
import glob
import json
import os
import re
import sys
import tempfile

from launch.benchmarks import processes
from launch.profiling import capture, report

KERAS_FIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_fit.py")
# (kind, op type pattern); the first that matches names the kind.
KINDS_BY_TYPE = (
    ("convolution", re.compile(r"Conv2D")),
    ("batch norm", re.compile(r"BatchNorm")),
    ("relu", re.compile(r"^(_MklNative|_Mkl)?Relu(Grad)?$")),
    ("concatenation", re.compile(r"Concat|^Slice$|^StridedSlice$")),
    ("pooling", re.compile(r"Pool")),
)
_BN_SCOPE = re.compile(r"(^|/)[^/]*_bn(_\d+)?(/|$)")  # Keras 3 scopes: conv2_block1_0_bn_1/
TOP_TYPES = 25


def kind_of(op_type, op_name):
    for kind, pattern in KINDS_BY_TYPE:
        if pattern.search(op_type):
            return kind
    if _BN_SCOPE.search(op_name):
        return "batch norm"  # an unfused batch norm's elementwise ops (Keras 3)
    return "other"


def op_self_times(capture_dir):
    """[(op name, op type, self seconds)] of one capture (idle time excluded), read as
    launch.profile reads its op table."""
    rows = report.op_rows(capture.tool_data(capture_dir, "framework_op_stats"), wall_us=1.0)
    return [(r["name"], r["type"], r["self_ms"] / 1e3) for r in rows]


def by_kind_and_type(ops, steps):
    kinds, types = {}, {}
    for name, op_type, seconds in ops:
        kind = kind_of(op_type, name)
        kinds[kind] = kinds.get(kind, 0.0) + seconds * 1e3 / steps
        key = f"{kind}: {op_type}" if kind != "other" else op_type
        types[key] = types.get(key, 0.0) + seconds * 1e3 / steps
    return kinds, types


def profile(command, name, profile_dir):
    record = processes.last_json(command, name)
    found = sorted(glob.glob(os.path.join(profile_dir, "plugins", "profile", "*")))
    if not found:
        raise RuntimeError(f"{name} left no profile under {profile_dir}")
    return record, op_self_times(found[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    shape = dict(model=args.model, batch_size=args.batch_size, image_size=args.image_size,
                 steps=args.steps, dtype=args.dtype)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for impl in ("engine", "keras_fit"):
            profile_dir = os.path.join(root, impl)
            command = (processes.worker_command("train", profile_dir=profile_dir, **shape)
                       if impl == "engine" else
                       [sys.executable, KERAS_FIT, f"--profile_dir={profile_dir}",
                        *(f"--{k}={v}" for k, v in shape.items())])
            record, ops = profile(command, impl, profile_dir)
            results[impl] = (record, *by_kind_and_type(ops, args.steps))
            print(f"{impl}: {record['images_per_sec']:.2f} img/s under the profiler",
                  file=sys.stderr)
    (engine, engine_kinds, engine_types), (keras, keras_kinds, keras_types) = (
        results["engine"], results["keras_fit"])
    rows = lambda a, b: sorted(  # noqa: E731
        ({"name": k, "engine_ms": round(a.get(k, 0.0), 1), "keras_ms": round(b.get(k, 0.0), 1)}
         for k in set(a) | set(b)), key=lambda r: -max(r["engine_ms"], r["keras_ms"]))
    summary = {"model": args.model, "batch_size": args.batch_size,
               "image_size": args.image_size, "dtype": args.dtype, "steps": args.steps,
               "tf": engine["tf"], "keras": keras["impl"],
               "images_per_sec": {"engine": round(engine["images_per_sec"], 2),
                                  "keras_fit": round(keras["images_per_sec"], 2)},
               "ms_per_step_by_kind": rows(engine_kinds, keras_kinds),
               "ms_per_step_by_type": rows(engine_types, keras_types)[:TOP_TYPES]}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
