"""`make demo`: demo data (if missing), then DenseNet-121 trained on it with
launch/recipes/demo.flags (a live progress line on a terminal, plain lines in a log file);
prints where the results are."""
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "demo_run", "data")
MODEL = os.path.join(REPO, "demo_run", "model")


def main():
    os.chdir(REPO)
    env = dict(os.environ, PYTHONPATH=REPO)
    if not os.path.exists(os.path.join(DATA, "dataset.json")):
        subprocess.run([sys.executable, "-m", "launch.make_demo_data", DATA], check=True, env=env)
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "launch.train",
                           "--flagfile=launch/recipes/demo.flags", *sys.argv[1:]],
                          env=env)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    print(f"demo: trained and evaluated in {time.time() - start:.0f} s. Results in {MODEL}:\n"
          f"  checkpoints  {MODEL}/checkpoints\n"
          f"  metrics      {MODEL}/metrics.jsonl\n"
          f"  flags        {MODEL}/flags.txt (rerun: python -m launch.train "
          f"--flagfile={MODEL}/flags.txt --model_dir=OTHER)\n"
          f"  tensorboard  .venv/bin/tensorboard --logdir {MODEL}\n"
          f"A second `make demo` resumes from the checkpoints (nothing left to do); "
          f"`rm -rf demo_run` starts over.")


if __name__ == "__main__":
    main()
