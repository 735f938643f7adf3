"""Assertions inside the pipeline: ``assert_that(pcoll, equal_to([...]))``.

A failed assertion fails the job with a diff of missing and unexpected elements.
"""


class _Matcher:
    def __init__(self, expected):
        self.expected = list(expected)


def equal_to(expected):
    """The PCollection holds exactly these elements, in any order."""
    return _Matcher(expected)


def is_empty():
    """The PCollection holds nothing."""
    return _Matcher([])


def assert_that(pcoll, matcher, label=None):
    """Checks ``pcoll`` against ``matcher`` when the pipeline runs."""
    if not isinstance(matcher, _Matcher):
        raise TypeError("assert_that takes equal_to([...]) or is_empty()")
    pcoll.pipeline._native.assert_equal(pcoll._native, matcher.expected)
