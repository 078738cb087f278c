"""The benchmarks behind `python -m launch.benchmark --mode=...`, one module per mode. Modes
that measure variants in fresh processes run them through `python -m launch.benchmarks.worker`
(internal, not a mode). Keras stays out of the shipped folders: `--mode=train --keras_fit` runs
Keras' `fit` from tests/benchmarks/keras_fit.py, in a source checkout."""
