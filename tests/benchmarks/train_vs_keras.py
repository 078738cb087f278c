"""The engine against keras.applications' DenseNet trained with model.fit, on the same synthetic
batch, each in its own process, alternating over --repeats rounds, with the convolutions'
ceiling beside both: what `python -m launch.benchmark --mode=train --keras_fit` measures, kept
as the entry point the README's older figures name. Prints JSON:

    python -m tests.benchmarks.train_vs_keras --model=densenet121 --dtype=both --repeats=3
"""
import argparse
import json
import os

from launch.benchmarks import train

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
    print(json.dumps(train.run(model=args.model, batch_size=args.batch_size,
                               image_size=args.image_size, dtypes=dtypes, steps=args.steps,
                               repeats=args.repeats, keras_fit=KERAS_FIT), indent=2))


if __name__ == "__main__":
    main()
