"""A profiler capture read with the profiler's own converters (xprof's xspace-to-tool-data, or
tensorboard-plugin-profile's on the TF 2.15 lane), not a hand-written protobuf parser."""
import glob
import json
import os

from engine import run_format
from launch import startup
from launch.errors import CommandError


class CaptureError(CommandError):
    """No capture, or one the converters cannot read; the message names the path."""


def capture_dirs(model_dir):
    """The run's captures (model_dir/train/plugins/profile/<time>/), oldest first."""
    root = run_format.capture_root(model_dir)
    return sorted(d for d in glob.glob(os.path.join(root, "*"))
                  if glob.glob(os.path.join(d, "*.xplane.pb")))


def find(model_dir, run=None):
    """The capture directory to read: `run` (a name under plugins/profile), else the newest."""
    if not os.path.isdir(model_dir):
        raise CaptureError(f"{model_dir}: no such directory (the training run)")
    found = capture_dirs(model_dir)
    if run is not None:
        found = [d for d in found if os.path.basename(d) == run]
        if not found:
            raise CaptureError(f"{model_dir}/train/plugins/profile/{run}: no such capture")
    if not found:
        raise CaptureError(f"{model_dir}: holds no profile (train with --profile_steps=START,END)")
    return found[-1]


def _converter():
    """(xspace_to_tool_data, the suffix its tool names take): xprof's, or on the TF 2.15 lane
    tensorboard-plugin-profile 2.15's, which names its XSpace tools "trace_viewer^" etc."""
    try:
        from xprof.convert import raw_to_tool_data
        return raw_to_tool_data.xspace_to_tool_data, ""
    except ImportError:
        pass
    try:
        from tensorboard_plugin_profile.convert import raw_to_tool_data
        return raw_to_tool_data.xspace_to_tool_data, "^"
    except ImportError:
        raise CaptureError("reading a profile needs xprof (or tensorboard-plugin-profile on TF "
                           "2.15): run make setup") from None


def tool_data(capture_dir, tool):
    """One of the profiler's tools (trace_viewer, framework_op_stats, ...) as parsed JSON."""
    paths = sorted(glob.glob(os.path.join(capture_dir, "*.xplane.pb")))
    convert, suffix = _converter()
    # The converters log every stage through C++ logging on fd 2: kept out of the report, and
    # its last line given in an error.
    failure = None
    with startup.stderr_set_aside() as logged:
        try:
            data, _ = convert(paths, tool + suffix, {})
        except Exception as e:  # the converters raise bare RuntimeError/ValueError
            failure = e
    if failure is not None:
        last = [line for line in "".join(logged).splitlines() if line.strip()][-1:]
        raise CaptureError(f"{capture_dir}: the profiler cannot read it as {tool} ({failure}"
                           f"{'; ' + last[0] if last else ''})") from None
    if not data:
        raise CaptureError(f"{capture_dir}: the profiler found no {tool} data in it")
    try:
        return json.loads(data)
    except ValueError:
        raise CaptureError(f"{capture_dir}: the profiler's {tool} output is not JSON") from None
