"""Each lane's lock: its requirements resolved to exact versions (pip constraints), so that hosts
set up a week apart run the same packages. setup_env.sh installs through it (PIP_CONSTRAINT).

    python launch/build/lock.py refresh 2.21   resolve requirements-tf2.21.txt anew (PyPI) with
                                               this interpreter and rewrite constraints-tf2.21.txt
    python launch/build/lock.py check 2.21     every pin installed at its version here, else one
                                               line per difference and exit 1

Run both with the lane's own Python (the venv's, or the lane's interpreter): the resolution
depends on the Python version and platform. The lock is for the CPU build; the GPU flavour
(tensorflow[and-cuda]) resolves its CUDA packages itself.
"""
import json
import os
import re
import subprocess
import sys
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
# Horovod is built from source (build_horovod.sh) and then installs these, unpinned by it.
HOROVOD_RUNTIME = ["cloudpickle", "psutil", "pyyaml", "packaging"]


def paths(lane):
    return (os.path.join(HERE, f"requirements-tf{lane}.txt"),
            os.path.join(HERE, f"constraints-tf{lane}.txt"))


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path):
    pins = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[normalized(name)] = version.strip()
    return pins


def refresh(lane):
    requirements, constraints = paths(lane)
    report = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", "-", "-r", requirements, *HOROVOD_RUNTIME],
        check=True, capture_output=True, text=True).stdout
    resolved = sorted((item["metadata"]["name"], item["metadata"]["version"])
                      for item in json.loads(report)["install"])
    python = ".".join(map(str, sys.version_info[:2]))
    with open(constraints, "w") as f:
        f.write(f"# The TF {lane} lane's lock: requirements-tf{lane}.txt and Horovod's runtime "
                f"packages resolved\n# for Python {python} on {sys.platform} (CPU build). "
                f"Rewritten by: python launch/build/lock.py refresh {lane}\n")
        f.writelines(f"{name}=={version}\n" for name, version in resolved)
    print(f"lock: {constraints}: {len(resolved)} packages")


def check(lane):
    _, constraints = paths(lane)
    wrong = []
    for name, version in sorted(read_pins(constraints).items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong.append(f"{name} {have or 'missing'} (locked {version})")
    for line in wrong:
        print(f"lock: TF {lane} lane differs from {os.path.basename(constraints)}: {line}",
              file=sys.stderr)
    if wrong:
        print(f"lock: run `make setup-all` to install the lock, or `python launch/build/lock.py "
              f"refresh {lane}` (with the lane's Python) to move it", file=sys.stderr)
        return 1
    print(f"lock: TF {lane} lane matches {os.path.basename(constraints)}")
    return 0


def main(argv):
    if len(argv) != 3 or argv[1] not in ("refresh", "check") or argv[2] not in ("2.21", "2.15"):
        print("usage: lock.py refresh|check 2.21|2.15", file=sys.stderr)
        return 2
    if argv[1] == "refresh":
        refresh(argv[2])
        return 0
    return check(argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
