"""The benchmarks behind `python -m launch.benchmark --mode=...`, one module per mode. Modes
that measure variants in fresh processes run them through `python -m launch.benchmarks.worker`
(internal, not a mode). The comparison with Keras' `fit` is not here: Keras stays out of the
shipped folders, so it is `python -m tests.benchmarks.train_vs_keras` in a source checkout."""
