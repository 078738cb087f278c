"""The first import of every entry point (python -m launch.X, the console scripts): TensorFlow
loads here, with its start-up noise left out (launch/startup.py), before anything else imports
it, and with oneDNN on or off as launch/onednn.py decides for this machine. Nothing but an entry
point imports this module."""
from launch import onednn
from launch.startup import quiet_tensorflow

onednn.settle()
quiet_tensorflow()
