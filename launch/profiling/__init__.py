"""Reading a captured profile offline: launch.profile's capture reader, step attribution,
Horovod timeline reader and report."""
