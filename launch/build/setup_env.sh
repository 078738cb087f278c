#!/usr/bin/env bash
# Creates (or brings up to date) one lane's virtual environment: TensorFlow, the Python packages of
# launch/build/requirements-<lane>.txt at the versions of its lock (constraints-<lane>.txt), and
# Horovod built from source for that TensorFlow.
#
#   launch/build/setup_env.sh 2.21   -> .venv        (current lane, Keras 3)
#   launch/build/setup_env.sh 2.15   -> .venv-tf2.15 (Gaudi's TF 2.15 stack, Keras 2)
#
# Idempotent: a lane whose requirements, lock, Horovod build inputs and scripts are unchanged since its
# last successful setup is left as it is (a stamp file holds their hash), so `make test` pays for
# setup once.
set -euo pipefail

lane=${1:?usage: setup_env.sh 2.21|2.15}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

case "$lane" in
  2.21) venv="$top/.venv";        python=${PYTHON_TF221:-python3.11} ;;
  2.15) venv="$top/.venv-tf2.15"; python=${PYTHON_TF215:-python3.10} ;;
  *) echo "setup_env.sh: unknown lane '$lane' (expected 2.21 or 2.15)" >&2; exit 2 ;;
esac
requirements="$here/requirements-tf$lane.txt"
# The lane's lock (launch/build/lock.py): every pip install below takes its exact versions.
constraints="$here/constraints-tf$lane.txt"
export PIP_CONSTRAINT="$constraints"

# The CPU wheel unless this machine has an NVIDIA GPU (see BUILD.md for GPU and Gaudi builds).
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  flavour=gpu
else
  flavour=cpu
fi

stamp="$venv/.densenet-ctl-setup"
want=$(cat "$requirements" "$constraints" "$here/setup_env.sh" "$here/build_horovod.sh" "$here"/*.patch \
       | { cat; echo "$flavour"; command -v mpicxx || true; } | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: $(basename "$venv") is up to date (TF $lane, $flavour)"
  exit 0
fi

# A pyenv shim answers `command -v` even for a version that is not active, so ask the interpreter.
if ! "$python" -c '' >/dev/null 2>&1; then
  found=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/${python#python}*/bin/$python 2>/dev/null | tail -n 1 || true)
  [ -n "$found" ] || {
    echo "setup: $python not found; install it or set PYTHON_TF${lane/./} to a Python >= 3.10" >&2
    exit 1
  }
  python=$found
fi
echo "setup: building $(basename "$venv") with $("$python" --version) for TF $lane ($flavour)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
"${pip[@]}" install -q --upgrade pip setuptools wheel

if [ "$flavour" = gpu ]; then
  # Same pins, but the CUDA build of TensorFlow instead of the CPU one.
  sed -E 's/^tensorflow-cpu==([0-9.]+)/tensorflow[and-cuda]==\1/' "$requirements" > "$venv/requirements.txt"
else
  cp "$requirements" "$venv/requirements.txt"
fi
"${pip[@]}" install -q -r "$venv/requirements.txt"

"$here/build_horovod.sh" "$venv"

echo "$want" > "$stamp"
echo "setup: $(basename "$venv") ready"
