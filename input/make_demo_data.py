"""python -m input.make_demo_data OUT_DIR: writes the demo data set (see input/demo_data.py)."""
import sys
import time

from input.demo_data import write_demo_data

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m input.make_demo_data OUT_DIR")
    start = time.time()
    counts = write_demo_data(sys.argv[1])
    print(f"demo data: {counts['train']} training and {counts['validation']} validation images "
          f"in {sys.argv[1]} ({time.time() - start:.1f} s)")
