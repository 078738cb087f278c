"""`python -m launch.benchmarks.worker KIND 'JSON OPTIONS'`: one benchmark variant in this
process, printed as one JSON line. Internal: the modes of launch.benchmark start it."""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import json
import sys

from launch.benchmarks import conv_floor, loop_overhead, memory, train

WORKERS = {"memory": memory.worker, "train": train.worker, "conv_floor": conv_floor.run,
           "loop_overhead": loop_overhead.worker,
           "loop_overhead_paired": loop_overhead.paired_worker}


def main(argv):
    if len(argv) != 3 or argv[1] not in WORKERS:
        sys.exit(f"usage: python -m launch.benchmarks.worker {{{','.join(WORKERS)}}} "
                 f"'JSON OPTIONS'")
    result = WORKERS[argv[1]](**json.loads(argv[2]))
    if result is not None:
        print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
