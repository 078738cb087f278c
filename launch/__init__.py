"""The command line: flags, entry points, recipes, device set-up, build scripts."""
from launch.startup import quiet_tensorflow

# Before any module of the entry points imports TensorFlow: see launch/startup.py.
quiet_tensorflow()
