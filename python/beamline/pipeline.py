"""Pipeline, options and results."""

from beamline import _native


class PipelineOptions:
    """Command-line style options: ``PipelineOptions(["--runner=local"], threads=2)``."""

    def __init__(self, flags=None, **kwargs):
        self._args = list(flags or [])
        for key, value in kwargs.items():
            if value is True:
                self._args.append(f"--{key}")
            else:
                self._args.append(f"--{key}={value}")

    def view_as(self, cls):
        """A view of these options as ``cls`` (``StandardOptions``), as Beam's."""
        return cls(self)

    def _set(self, name, value):
        """Sets (or with None removes) the option ``--name``."""
        flag = "--" + name.replace("_", "-")
        self._args = [a for a in self._args if a.split("=", 1)[0] not in (flag, "--" + name)]
        if value == "true":
            self._args.append(flag)
        elif value is not None:
            self._args.append(f"{flag}={value}")

    def get_all_options(self):
        """The options as a dict of ``name -> value`` strings."""
        out = {}
        for arg in self._args:
            if arg.startswith("--"):
                name, _, value = arg[2:].partition("=")
                out[name.replace("-", "_")] = value or "true"
        return out


class StandardOptions:
    """The runner and streaming options, as Beam's ``StandardOptions`` view."""

    def __init__(self, options):
        object.__setattr__(self, "_options", options)

    @property
    def runner(self):
        return self._options.get_all_options().get("runner")

    @runner.setter
    def runner(self, value):
        self._options._set("runner", value)

    @property
    def streaming(self):
        return self._options.get_all_options().get("streaming") in ("true", "True", "1")

    @streaming.setter
    def streaming(self, value):
        self._options._set("streaming", "true" if value else None)


class Pipeline:
    """A pipeline; use as a context manager to run it on exit, like Beam's."""

    def __init__(self, options=None, argv=None):
        if options is None:
            options = PipelineOptions(argv or [])
        self._options = options
        self._native = _native.Pipeline(list(options._args))
        self._result = None

    @property
    def options(self):
        return self._options

    def __or__(self, transform):
        from beamline.transforms import apply
        from beamline.pvalue import PBegin

        return apply(PBegin(self), transform)

    def run(self):
        """Runs the pipeline to completion and returns its result."""
        from beamline import _workers

        workers = int(self._options.get_all_options().get("python_workers", "1") or 1)
        if workers > 1:
            _workers.start(workers)
        try:
            self._result = PipelineResult(self._native.run())
        finally:
            _workers.stop()
        return self._result

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.run()
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


class PipelineResult:
    """What a finished pipeline reports."""

    def __init__(self, raw_metrics):
        self._metrics = _Metrics(raw_metrics)

    def wait_until_finish(self):
        """Pipelines run synchronously; returns the final state."""
        return "DONE"

    def metrics(self):
        return self._metrics
