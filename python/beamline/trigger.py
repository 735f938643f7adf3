"""Triggers and accumulation modes (delays in seconds, like Beam)."""


__all__ = [
    "AccumulationMode", "AfterAll", "AfterAny", "AfterCount", "AfterEach", "AfterProcessingTime",
    "AfterWatermark", "Always", "DefaultTrigger", "Never", "OrFinally", "Repeatedly",
]


class AccumulationMode:
    DISCARDING = "discarding"
    ACCUMULATING = "accumulating"


class _Trigger:
    def _spec(self):
        raise NotImplementedError


class DefaultTrigger(_Trigger):
    def _spec(self):
        return ("default",)


class Always(_Trigger):
    def _spec(self):
        return ("always",)


class Never(_Trigger):
    def _spec(self):
        return ("never",)


class AfterCount(_Trigger):
    def __init__(self, count):
        self.count = int(count)

    def _spec(self):
        return ("after_count", self.count)


class AfterProcessingTime(_Trigger):
    def __init__(self, delay=0):
        self.delay = delay

    def _spec(self):
        return ("after_processing_time", int(round(self.delay * 1000)))


class AfterWatermark(_Trigger):
    def __init__(self, early=None, late=None):
        self.early, self.late = early, late

    def _spec(self):
        return (
            "after_watermark",
            self.early._spec() if self.early else None,
            self.late._spec() if self.late else None,
        )


class Repeatedly(_Trigger):
    def __init__(self, underlying):
        self.underlying = underlying

    def _spec(self):
        return ("repeatedly", self.underlying._spec())


class AfterAny(_Trigger):
    def __init__(self, *triggers):
        self.triggers = triggers

    def _spec(self):
        return ("after_any", [t._spec() for t in self.triggers])


class AfterAll(_Trigger):
    def __init__(self, *triggers):
        self.triggers = triggers

    def _spec(self):
        return ("after_all", [t._spec() for t in self.triggers])


class AfterEach(_Trigger):
    def __init__(self, *triggers):
        self.triggers = triggers

    def _spec(self):
        return ("after_each", [t._spec() for t in self.triggers])


class OrFinally(_Trigger):
    def __init__(self, body, exit):
        self.body, self.exit = body, exit

    def _spec(self):
        return ("or_finally", self.body._spec(), self.exit._spec())
