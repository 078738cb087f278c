#!/usr/bin/env bash
# Installs Horovod 0.28.1 into a virtual environment that already holds TensorFlow, building it
# from its PyPI source distribution the first time and reusing the built wheel after that.
#
#   launch/build/build_horovod.sh VENV
#
# The wheel is cached outside the repository, keyed by Horovod, TensorFlow and Python versions and
# the collective back-ends compiled in, because it links against that exact TensorFlow's ABI.
# Cache root: $DENSENET_CTL_CACHE (default ~/.cache/densenet-ctl).
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}  # keep TF's start-up chatter out of the log

venv=${1:?usage: build_horovod.sh VENV}
here=$(cd "$(dirname "$0")" && pwd)
horovod_version=0.28.1
py="$venv/bin/python"
pip=("$py" -m pip --disable-pip-version-check --no-input)

tf_version=$("$py" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null) || {
  echo "build_horovod: TensorFlow does not import in $venv; install it first" >&2; exit 1; }
py_version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# Back-ends: Gloo always (CPU all-reduce, no MPI needed); MPI only when an MPI compiler exists;
# NCCL when the caller asks for it (HOROVOD_GPU_OPERATIONS=NCCL, see BUILD.md).
export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
ops=gloo
if command -v mpicxx >/dev/null 2>&1; then
  export HOROVOD_WITH_MPI=1; ops="$ops-mpi"
else
  export HOROVOD_WITHOUT_MPI=1
fi
if [ -n "${HOROVOD_GPU_OPERATIONS:-}" ]; then ops="$ops-$(echo "$HOROVOD_GPU_OPERATIONS" | tr 'A-Z' 'a-z')"; fi

installed=$("$py" -c 'import horovod.tensorflow as h, horovod; print(horovod.__version__)' 2>/dev/null || true)
if [ "$installed" = "$horovod_version" ]; then
  echo "build_horovod: Horovod $horovod_version already installed in $venv"
  exit 0
fi

cache_root=${DENSENET_CTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/densenet-ctl}
cache="$cache_root/horovod-$horovod_version-tf$tf_version-py$py_version-$ops"
wheel=$(ls "$cache"/horovod-*.whl 2>/dev/null | head -n 1 || true)

if [ -z "$wheel" ]; then
  echo "build_horovod: building Horovod $horovod_version for TF $tf_version, Python $py_version ($ops);" \
       "about 3 minutes on 2 cores"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "${pip[@]}" download -q --no-deps --no-binary :all: -d "$work" "horovod==$horovod_version"
  tar -xzf "$work/horovod-$horovod_version.tar.gz" -C "$work"
  src="$work/horovod-$horovod_version"
  # TF >= 2.16 wheels lack the XLA headers that xla_mpi_ops.cc includes; see the patch's header.
  if "$py" -c 'import sys, tensorflow as tf; v = tuple(map(int, tf.__version__.split(".")[:2])); sys.exit(0 if v >= (2, 16) else 1)'; then
    patch -p1 -d "$src" < "$here/horovod-$horovod_version-drop-xla-mpi-ops.patch"
  fi
  # CMake 4 refuses the old cmake_minimum_required of the bundled third-party code (gloo).
  "${pip[@]}" install -q "cmake>=3.13,<4"
  mkdir -p "$work/wheel"
  # Horovod runs `make -j8` unless MAKEFLAGS is set; 8 jobs on 2 cores only thrash memory.
  MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-2}" "${pip[@]}" wheel --no-build-isolation --no-deps -w "$work/wheel" "$src" \
    > "$work/build.log" 2>&1 || {
      tail -n 40 "$work/build.log" >&2
      echo "build_horovod: the Horovod build failed (last lines above); see BUILD.md" >&2
      exit 1
    }
  mkdir -p "$cache"
  cp "$work"/wheel/horovod-*.whl "$cache/"
  wheel=$(ls "$cache"/horovod-*.whl | head -n 1)
  echo "build_horovod: cached $wheel"
else
  echo "build_horovod: reusing cached $wheel"
fi

"${pip[@]}" install -q --force-reinstall --no-deps "$wheel"
# Horovod's own pure-Python dependencies (not pinned by the wheel when installed with --no-deps).
"${pip[@]}" install -q cloudpickle psutil pyyaml packaging
