"""`python -m tests.launch.refusals < CASES.json`: launch.train's command line (absl's app.run
and the command's main, as `python -m launch.train` runs them) on each argument list of CASES,
one after another in this one process, flags reset to their defaults before each; prints a
JSON list of {"exit": code, "stderr": text}. One TensorFlow start for dozens of refused command
lines, where a process each would start it dozens of times."""
import contextlib
import io
import json
import sys

from absl import flags

from launch import train


def refuse(argv):
    flags.FLAGS.unparse_flags()
    said, code = io.StringIO(), None
    sys.argv = ["launch.train", *argv]
    with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
        try:
            train.run()
        except SystemExit as ended:
            code = ended.code
    return {"exit": code, "stderr": said.getvalue()}


if __name__ == "__main__":
    json.dump([refuse(argv) for argv in json.load(sys.stdin)], sys.stdout)
