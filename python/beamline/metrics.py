"""User metrics from inside DoFns: ``Metrics.counter("ns", "name").inc()``."""

from beamline import _native


class _Counter:
    def __init__(self, namespace, name):
        self.namespace, self.name = namespace, name

    def inc(self, n=1):
        _native.record_metric(0, self.namespace, self.name, int(n))

    def dec(self, n=1):
        self.inc(-n)


class _Distribution:
    def __init__(self, namespace, name):
        self.namespace, self.name = namespace, name

    def update(self, value):
        _native.record_metric(1, self.namespace, self.name, int(value))


class _Gauge:
    def __init__(self, namespace, name):
        self.namespace, self.name = namespace, name

    def set(self, value):
        _native.record_metric(2, self.namespace, self.name, int(value))


class Metrics:
    @staticmethod
    def counter(namespace, name):
        return _Counter(namespace, name)

    @staticmethod
    def distribution(namespace, name):
        return _Distribution(namespace, name)

    @staticmethod
    def gauge(namespace, name):
        return _Gauge(namespace, name)
