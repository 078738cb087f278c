"""The training log (metrics.jsonl records, console lines, TensorBoard scalars) and the live
progress line."""
import time

from engine import observe, run_format
from engine.cadence import itstime, next_boundary
from engine.controller import Hook


class TrainLog(Hook):
    """Every `log_steps` and at each epoch's end: the metric sums since the last record (read
    from the device, over all workers), the LR, throughput and memory, as a metrics.jsonl
    record and (unless `quiet`, when a progress line shows the loss) a console line. TensorBoard
    scalars every `summary_steps` and at epoch ends when summaries are on."""

    def __init__(self, *, train_step, backend, recorder, meter, log, log_steps, summary_steps,
                 steps_per_epoch, quiet=False):
        self.train_step, self.backend, self.recorder = train_step, backend, recorder
        self.meter, self.log, self.quiet = meter, log, quiet
        self.log_steps, self.summary_steps = log_steps, summary_steps
        self.steps_per_epoch = steps_per_epoch
        self.last_loss = None

    def next_boundary(self, step):
        epoch_end = (step // self.steps_per_epoch + 1) * self.steps_per_epoch
        return next_boundary(step, limit=epoch_end, every=(self.log_steps, self.summary_steps))

    def at_boundary(self, step):
        epoch_end = -(-step // self.steps_per_epoch) * self.steps_per_epoch
        record = run_format.train_record(
            step=step, epoch=step / self.steps_per_epoch,
            metrics=self.train_step.read_metrics(),
            lr=self.train_step.learning_rate(step - 1), rates=self.meter.interval(),
            host_memory_mb=observe.peak_host_memory_mb(),
            device_memory_mb=observe.peak_device_memory_mb())
        self.recorder.write(record)
        if itstime(step, self.summary_steps, last=epoch_end):
            self.recorder.scalars(run_format.TRAIN, step,
                                  {k: record[k] for k in ("loss", "top1", "top5", "lr",
                                                          "images_per_sec", "grad_norm")
                                   if k in record})
        self.last_loss = record["loss"]
        if not self.quiet:
            self.log(run_format.format_train(record))


class ProgressLine(Hook):
    """Step, the last logged loss, images/s of this process's steps and ETA, on the console's
    status line after every call (host-side time only, no device read)."""

    def __init__(self, *, total_steps, global_batch, train_log, console):
        self.total, self.global_batch = total_steps, global_batch
        self.train_log, self.console = train_log, console
        self.start_step, self.start = 0, time.perf_counter()

    def begin(self, step):
        self.start_step, self.start = step, time.perf_counter()

    def after_steps(self, step):
        elapsed = time.perf_counter() - self.start
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else 0.0
        loss = self.train_log.last_loss
        loss = "" if loss is None else f"loss {loss:.4f} | "
        self.console.status(f"step {step}/{self.total} | {loss}{rate * self.global_batch:6.1f} "
                            f"img/s | ETA {int(eta) // 60:d}:{int(eta) % 60:02d}   ")

    def end(self, step):
        self.console.end_status()
