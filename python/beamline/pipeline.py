"""Pipeline and its result (a handle on the running job)."""

import atexit
import os
import signal
import sys
import threading
import time

from beamline import _native
from beamline.options.pipeline_options import PipelineOptions, StandardOptions  # noqa: F401


class Pipeline:
    """A pipeline; use as a context manager to run it on exit, like Beam's."""

    def __init__(self, options=None, argv=None):
        if options is None:
            options = PipelineOptions(argv or [])
        self._options = options
        args = list(options._args)
        if "job_name" not in options.get_all_options():
            # The script's name, as a Rust program's (the interpreter is not the job).
            name = os.path.splitext(os.path.basename(sys.argv[0] or ""))[0] or "python"
            args.append(f"--job-name={name}")
        self._native = _native.Pipeline(args, options._declared())
        if "help" in options.get_all_options():
            print(self._native.help_text(os.path.basename(sys.argv[0]) or "python"), end="")
            sys.exit(0)
        self._native.check_options()
        self._result = None

    @property
    def options(self):
        return self._options

    def __or__(self, transform):
        from beamline.transforms import apply
        from beamline.pvalue import PBegin

        return apply(PBegin(self), transform)

    def run(self):
        """Starts the pipeline and returns its result at once, as Beam's portable runners
        do: ``wait_until_finish()`` waits for it (a ``with`` block does), ``cancel()``
        stops it."""
        from beamline import _workers

        workers = int(self._options.get_all_options().get("python_workers", "1") or 1)
        if workers > 1:
            _workers.start(workers)
        streaming = StandardOptions(self._options).streaming
        try:
            job = self._native.start()
        except BaseException:
            _workers.stop()
            raise
        try:
            self._result = PipelineResult(job, on_end=_workers.stop, streaming=streaming)
        except BaseException:
            # A signal between the start and the handle: the job must not outlive it.
            job.cancel()
            _workers.stop()
            raise
        return self._result

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            result = self.run()
            try:
                result.wait_until_finish()
            except KeyboardInterrupt:
                # Also when it came before the wait began: the job stops with it.
                result.cancel()
                raise
        return False


class _Metrics:
    def __init__(self, raw):
        self._raw = raw

    def _select(self, kind, namespace, name):
        return [v for (step, ns, n), v in self._raw[kind].items() if ns == namespace and n == name]

    def counter(self, namespace, name):
        """A counter summed over every step that reported it (None if none did)."""
        values = self._select("counters", namespace, name)
        return sum(values) if values else None

    def distribution(self, namespace, name):
        """``(count, sum, min, max)`` merged over steps (None if none reported)."""
        values = self._select("distributions", namespace, name)
        if not values:
            return None
        return (
            sum(v[0] for v in values),
            sum(v[1] for v in values),
            min(v[2] for v in values),
            max(v[3] for v in values),
        )

    def gauge(self, namespace, name):
        """The latest value set on a gauge (None if never set)."""
        values = self._select("gauges", namespace, name)
        return max(values, key=lambda v: v[1])[0] if values else None


class PipelineState:
    """The states of a job, as Beam's ``PipelineState`` (they compare as strings)."""

    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


# Jobs started and not yet seen to end: waited for when the interpreter exits, so a script
# that calls ``p.run()`` without waiting still gets all of its output.
_running = set()
_running_lock = threading.Lock()


class PipelineResult:
    """A running or finished job: state, wait, cancel, metrics (also while it runs).

    Ctrl-C while waiting cancels a batch job (it stops at the next bundle, commits nothing
    and removes its temporary files) and re-raises KeyboardInterrupt; a streaming job is
    drained instead (pending panes fire, output commits) and a second Ctrl-C cancels it.
    """

    def __init__(self, job, on_end=None, streaming=False):
        self._job = job
        self._on_end = on_end
        self._streaming = streaming
        with _running_lock:
            _running.add(self)

    @property
    def ui_url(self):
        """The job UI's page when the pipeline runs with ``--ui`` (else None)."""
        return self._job.ui_url

    @property
    def state(self):
        """``RUNNING``, ``DONE``, ``FAILED`` or ``CANCELLED``."""
        return self._job.state()

    def _ended(self):
        with _running_lock:
            _running.discard(self)
            on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    def _wait(self, timeout_s):
        # Short waits with the GIL released, so Ctrl-C is seen promptly between them.
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            step = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            state = self._job.wait(step)
            if state != PipelineState.RUNNING:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                return state

    def wait_until_finish(self, duration=None):
        """Waits for the job to end, or ``duration`` milliseconds (as Beam); returns the
        state. Raises RuntimeError with the job's error (and Python traceback) if it failed.
        SIGTERM while waiting (in the main thread) counts as Ctrl-C."""
        with _sigterm_interrupts():
            return self._wait_until_finish(duration)

    def _wait_until_finish(self, duration):
        timeout_s = None if duration is None else duration / 1000.0
        try:
            try:
                state = self._wait(timeout_s)
            except KeyboardInterrupt:
                if self._streaming and self.state == PipelineState.RUNNING:
                    self._job.drain()
                    print("beamline: draining the streaming job (Ctrl-C again cancels it)",
                          file=sys.stderr)
                    try:
                        return self._wait_until_finish(duration)
                    except KeyboardInterrupt:
                        pass
                self._job.cancel()
                self._job.wait(None)
                raise
        except RuntimeError:
            self._ended()
            raise
        if state != PipelineState.RUNNING:
            self._ended()
        return state

    def cancel(self):
        """Stops the job at its next bundle; returns its final state."""
        self._job.cancel()
        try:
            return self.wait_until_finish()
        except RuntimeError:
            return self.state

    def drain(self):
        """Drains a streaming job: sources stop, pending panes fire, output commits."""
        self._job.drain()

    def metrics(self):
        """Metrics reported so far (all of them once the job ended)."""
        return _Metrics(self._job.metrics())


class _sigterm_interrupts:
    """While waiting, SIGTERM raises KeyboardInterrupt (a process manager's stop request
    drains or cancels the job as Ctrl-C does); the previous handler comes back after."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            def interrupt(signum, frame):
                raise KeyboardInterrupt("SIGTERM")

            self._previous = signal.signal(signal.SIGTERM, interrupt)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


@atexit.register
def _wait_for_running_jobs():
    with _running_lock:
        jobs = list(_running)
    for r in jobs:
        try:
            r.wait_until_finish()
        except RuntimeError as e:
            print(f"beamline: a pipeline that was not waited for failed: {e}", file=sys.stderr)
            sys.stderr.flush()
            os._exit(1)
