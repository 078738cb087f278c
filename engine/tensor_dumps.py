"""TF's own debugger dumps (tf.debugging.experimental.enable_dump_debug_info) for a window of
train steps, and, when a step's loss or gradients became NaN or Inf, the first op in execution
order whose output held one, read back with TF's own reader (DebugDataReader).

TF instruments a tf.function when it is traced under the dump callback, so the loop runs the
window's steps through a freshly traced copy of the train step (TrainStep.fresh_function) and
goes back to the plain one after it: steps outside the window pay nothing. The dump keeps the
last `buffer_size` op executions (TF's circular buffer), so a long window does not fill the
disk; it is written out when the window ends (or when a bad step stops the run). The dump
directory opens in TensorBoard's Debugger V2 tab: tensorboard --logdir DIR.
"""
import dataclasses
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

# TF's tensor debug modes; which of them carry a health summary, and where in it.
MODES = ("NO_TENSOR", "CURT_HEALTH", "CONCISE_HEALTH", "FULL_HEALTH", "SHAPE", "FULL_NUMERICS",
         "FULL_TENSOR")
# mode -> index of the (-inf, +inf, nan) counts, or of CURT_HEALTH's single "any" flag
_HEALTH = {"CURT_HEALTH": (1, 2), "CONCISE_HEALTH": (2, 5), "FULL_HEALTH": (5, 8)}


@dataclasses.dataclass
class FirstNonFinite:
    """The first op execution in a dump whose output held NaN or Inf."""
    op_name: str
    op_type: str
    output_slot: int
    graph_name: str
    dtype: Optional[str] = None
    shape: Optional[Tuple] = None

    def describe(self):
        kind = f"{self.op_type}"
        if self.dtype:
            kind += f", {self.dtype}"
        if self.shape is not None:
            kind += f" {list(self.shape)}"
        slot = f":{self.output_slot}" if self.output_slot else ""
        return f"{self.op_name}{slot} ({kind})"


class TensorDumps:
    """Dumps of the steps inside `window` (START, END: steps START+1..END) into `dump_root`.

    Every worker gets one, so that all run the window's steps alike (one per call, each
    checked: the collectives at step boundaries must match); only those with `writes` dump."""

    def __init__(self, dump_root, *, window, mode="CONCISE_HEALTH", buffer_size=100_000,
                 writes=True):
        if mode not in MODES:
            raise ValueError(f"unknown tensor debug mode {mode!r}; expected one of "
                             f"{', '.join(MODES)}")
        self.dump_root, self.window, self.mode = dump_root, window, mode
        self.buffer_size, self.writes = buffer_size, writes
        self.active = False
        self._function = None

    def covers(self, step):
        """Whether the step after `step` (step + 1) is inside the window."""
        return self.window[0] <= step < self.window[1]

    def start(self, train_step):
        """Opens the window; returns the freshly traced step function to run it with (None on
        a worker that does not write: it runs the plain step)."""
        self.active = True
        if not self.writes:
            return None
        tf.debugging.experimental.enable_dump_debug_info(
            self.dump_root, tensor_debug_mode=self.mode, circular_buffer_size=self.buffer_size)
        self._function = train_step.fresh_function()
        return self._function

    def stop(self):
        """Closes the window: writes the buffer out and turns dumping off."""
        if self.active and self.writes:
            tf.debugging.experimental.disable_dump_debug_info()
        self.active = False

    def first_nonfinite(self, images=None, labels=None):
        """The first op execution in the dump whose output held NaN or Inf, or None. With the
        batch the window ran on, its dtype and static shape are read from the traced graph."""
        self.stop()
        if not self.writes or (self.mode not in _HEALTH and self.mode != "FULL_TENSOR"):
            return None  # SHAPE, NO_TENSOR, FULL_NUMERICS: no per-op finiteness in the dump
        from tensorflow.python.debug.lib import debug_events_reader
        with debug_events_reader.DebugDataReader(self.dump_root) as reader:
            reader.update()
            for trace in reader.graph_execution_traces():
                if not _nonfinite(reader, trace, self.mode):
                    continue
                found = FirstNonFinite(trace.op_name, trace.op_type, trace.output_slot,
                                       reader.graph_by_id(trace.graph_id).name)
                if images is not None and self._function is not None:
                    found.dtype, found.shape = _static_output(
                        self._function.get_concrete_function(images, labels).graph,
                        trace.op_name, trace.output_slot)
                return found
        return None


def _nonfinite(reader, trace, mode):
    if mode == "FULL_TENSOR":
        value = reader.graph_execution_trace_to_tensor_value(trace)
        return (value is not None and np.issubdtype(np.asarray(value).dtype, np.floating)
                and not np.all(np.isfinite(value)))
    summary = trace.debug_tensor_value
    if not summary:
        return False  # a non-float output: no summary
    begin, end = _HEALTH[mode]
    return any(v > 0 for v in summary[begin:end])


def _static_output(graph, op_name, slot):
    """(dtype name, static shape) of an op's output in the traced graph, or (None, None) when the
    op lives in a nested graph (a cond branch or a loop body)."""
    try:
        tensor = graph.get_operation_by_name(op_name).outputs[slot]
    except (KeyError, ValueError, IndexError):
        return None, None
    shape = tuple(tensor.shape.as_list()) if tensor.shape.rank is not None else None
    return tensor.dtype.name, shape
