"""Which worker does not answer. Every worker posts where it is - its stage, and a beat every
few seconds from a thread of its own - to the key-value store horovodrun's launcher already
serves its workers (Gloo's rendezvous store, HOROVOD_GLOO_RENDEZVOUS_ADDR/PORT; the elastic
launcher's too). A worker that waits at a collective reads everyone's entry and names, by rank,
host and process:
- a worker whose beat stopped (frozen, killed, its host gone: nothing in it runs any more);
- a worker that still beats but whose stage has not moved for longer than a probe's limit
  (stuck outside any probe, e.g. on a hung file system);
- a worker that never answered the roll call;
- or, when every worker waits at the same collective, the collective itself.
Then it ends the command (exit 3) with that one line. Times are each observer's own clock
(when it saw an entry change), never compared across hosts. Without the store (one process,
mpirun) only the overall deadline remains, and its line names the hosts."""
import json
import os
import threading
import time
import urllib.error
import urllib.request

SCOPE = "densenet-preflight"
BEAT_SECONDS = 2.0
# A live worker beats every BEAT_SECONDS from its own thread (the probes release the
# interpreter while TensorFlow works); this many seconds without one is a worker not running.
SILENT_SECONDS = 20.0
REQUEST_SECONDS = 2.0


class Store:
    """The launcher's key-value store over HTTP: put and get JSON under SCOPE."""

    def __init__(self, address, port):
        self.url = f"http://{address}:{port}/{SCOPE}"

    @classmethod
    def from_environment(cls):
        address = os.environ.get("HOROVOD_GLOO_RENDEZVOUS_ADDR")
        port = os.environ.get("HOROVOD_GLOO_RENDEZVOUS_PORT")
        return cls(address, port) if address and port else None

    def put(self, key, value):
        request = urllib.request.Request(f"{self.url}/{key}", method="PUT",
                                         data=json.dumps(value).encode())
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS):
            pass

    def get(self, key):
        """The value, or None where nothing was put."""
        try:
            with urllib.request.urlopen(f"{self.url}/{key}", timeout=REQUEST_SECONDS) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise


class Seen:
    """What an observer knows of one worker: its last entry and, on the observer's clock, when
    its beat and its stage last changed."""

    def __init__(self, now):
        self.entry, self.beat_changed, self.stage_changed = None, now, now

    def update(self, entry, now):
        if entry is None:
            return
        if self.entry is None or entry["beat"] != self.entry["beat"]:
            self.beat_changed = now
        if self.entry is None or entry["stage_number"] != self.entry["stage_number"]:
            self.stage_changed = now
        self.entry = entry


class RollCall:
    """`stage(where)` as this worker goes; `waiting(where)` before a collective. `limit`: a
    probe's time limit; `overall`: the backstop for the whole command; `host`: this worker's
    host as the launcher named it. `on_silence(line)` is called once, from the watching
    thread, with the line that names who does not answer: it ends the process."""

    def __init__(self, *, rank, size, host, limit, overall, store, on_silence,
                 clock=time.monotonic, watch=True):
        self.rank, self.host, self.limit, self.overall = rank, host, limit, overall
        self.store, self.clock, self.on_silence = store, clock, on_silence
        self.started = clock()
        self.where, self.stage_number, self.beat, self.is_waiting = "starting", 0, 0, False
        self.waiting_since = None
        self.seen = {r: Seen(self.started) for r in range(size) if r != rank}
        self._done = threading.Event()
        self._post()
        if watch:
            threading.Thread(target=self._watch, daemon=True).start()

    def stage(self, where):
        self._move(where, waiting=False)

    def waiting(self, where):
        self._move(where, waiting=True)

    def done(self):
        self._done.set()

    def _move(self, where, *, waiting):
        self.where, self.is_waiting = where, waiting
        self.stage_number += 1
        self.waiting_since = self.clock() if waiting else None
        self._post()

    def _post(self):
        if self.store is None:
            return
        try:
            self.store.put(self.rank, {"stage": self.where, "stage_number": self.stage_number,
                                       "waiting": self.is_waiting, "beat": self.beat,
                                       "pid": os.getpid(), "host": self.host})
        except (OSError, ValueError):
            pass  # the next beat tries again; an observer sees only a late beat

    def heartbeat(self):
        """One beat posted: this worker's process still runs."""
        self.beat += 1
        self._post()

    def _watch(self):
        while not self._done.wait(BEAT_SECONDS):
            self.heartbeat()
            line = self.check()
            if line:
                self.on_silence(line)
                return

    def check(self):
        """One line naming who does not answer, or None while everyone does (or this worker
        is not waiting: only a worker at a collective judges the others)."""
        now = self.clock()
        if now - self.started > self.overall:
            hosts = sorted({s.entry["host"] for s in self.seen.values() if s.entry})
            among = f", among {', '.join(hosts)}" if hosts else ""
            return (f"rank {self.rank} waited {self.overall:.0f} s (at {self.where}) for "
                    f"workers that did not answer{among}")
        if self.store is None or not self.is_waiting:
            return None
        try:
            entries = {r: self.store.get(r) for r in self.seen}
        except (OSError, ValueError):
            return None  # the store itself does not answer: the overall deadline decides
        for r, entry in entries.items():
            self.seen[r].update(entry, now)
        return self.judge(now)

    def judge(self, now):
        waited = now - self.waiting_since
        grace = self.limit + SILENT_SECONDS
        late = []
        for r, seen in sorted(self.seen.items()):
            if seen.entry is None:
                if waited > grace:
                    late.append(f"rank {r} never answered the roll call")
                continue
            who = f"rank {r} ({seen.entry['host']}, process {seen.entry['pid']})"
            where = f"at {seen.entry['stage']}"
            if now - seen.beat_changed > SILENT_SECONDS:
                late.append(f"{who} has not answered for at least "
                            f"{now - seen.beat_changed:.0f} s, last {where}")
            elif not seen.entry["waiting"] and now - seen.stage_changed > grace:
                late.append(f"{who} has been {where} for at least "
                            f"{now - seen.stage_changed:.0f} s (a probe's limit is {self.limit} s)")
        if late:
            return (f"rank {self.rank} ({self.host}) waited {waited:.0f} s at "
                    f"{self.where}: " + "; ".join(late))
        everyone_here = all(s.entry and s.entry["waiting"] and s.entry["stage"] == self.where
                            for s in self.seen.values())
        if everyone_here and waited > grace:
            return (f"every worker reached {self.where}, and it has not completed in "
                    f"{waited:.0f} s: the workers cannot reach each other (network, firewall, "
                    f"interface: horovodrun --network-interface)")
        return None

