"""python -m launch.make_demo_data OUT_DIR: writes the demo data set (see input/demo_data.py)."""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import sys
import time

from absl import app

from input.demo_data import write_demo_data


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("give the output directory: python -m launch.make_demo_data OUT_DIR")
    start = time.time()
    counts = write_demo_data(argv[1])
    print(f"demo data: {counts['train']} training and {counts['validation']} validation images "
          f"in {argv[1]} ({time.time() - start:.1f} s)")
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
