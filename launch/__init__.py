"""The command line: flags, entry points, recipes, device set-up, build scripts.

Every entry point imports launch.quiet_start first, so that TensorFlow starts without its noise
(launch/startup.py); importing any other module of launch/ has no such effect."""
