"""The engine against keras.applications' DenseNet trained with model.fit, on the same synthetic
batch, each in its own process, alternating over --repeats rounds; img/s as mean +- 1.96 sigma
over timed steps after warm-up, and the median ratio. Keras lives in tests/ only, so this is an
entry point of its own (a source checkout), printing JSON:

    python -m tests.benchmarks.train_vs_keras --model=densenet121 --dtype=both --repeats=3
"""
import argparse
import json
import os
import statistics
import sys

from launch.benchmarks import processes

KERAS_FIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_fit.py")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "both"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    dtypes = ["fp32", "bf16"] if args.dtype == "both" else [args.dtype]
    shape = dict(model=args.model, batch_size=args.batch_size, image_size=args.image_size,
                 steps=args.steps)
    results = {}
    for _ in range(args.repeats):
        for dtype in dtypes:
            for impl, command in (
                    ("engine", processes.worker_command("train", dtype=dtype, **shape)),
                    ("keras_fit", [sys.executable, KERAS_FIT, f"--dtype={dtype}",
                                   *(f"--{k}={v}" for k, v in shape.items())])):
                record = processes.last_json(command, f"{impl} {dtype}")
                results.setdefault((dtype, impl), []).append(record)
                print(f"train: {dtype} {record['impl']}: {record['images_per_sec']:.2f} "
                      f"+- {record['ci95']:.2f} img/s", file=sys.stderr)
    summary = {"model": args.model, "batch_size": args.batch_size,
               "image_size": args.image_size, "steps": args.steps, "repeats": args.repeats}
    for dtype in dtypes:
        engine = [r["images_per_sec"] for r in results[(dtype, "engine")]]
        keras = [r["images_per_sec"] for r in results[(dtype, "keras_fit")]]
        summary[dtype] = {"engine_images_per_sec": round(statistics.median(engine), 2),
                          "keras_fit_images_per_sec": round(statistics.median(keras), 2),
                          "keras": results[(dtype, "keras_fit")][0]["impl"],
                          "tf": results[(dtype, "engine")][0]["tf"],
                          "engine_ci95": round(results[(dtype, "engine")][0]["ci95"], 2),
                          "ratio_median": round(statistics.median(
                              a / b for a, b in zip(engine, keras)), 3)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
