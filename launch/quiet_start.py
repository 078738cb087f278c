"""The first import of every entry point (python -m launch.X, the console scripts): TensorFlow
loads here, with its start-up noise left out (launch/startup.py), before anything else imports
it. Nothing but an entry point imports this module."""
from launch.startup import quiet_tensorflow

quiet_tensorflow()
