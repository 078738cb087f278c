"""The command line: flags, entry points, recipes, device set-up, build scripts."""
import os

# TensorFlow reads this once, when it is first imported (by any module of the entry points):
# its C++ INFO and WARNING lines would drown the engine's own. A user's setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
