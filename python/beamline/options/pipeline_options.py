"""Pipeline options (Beam's ``apache_beam.options.pipeline_options``): flags, views, help.

Options are command-line flags (``--runner=local --threads=2``). A program declares its own
the way Beam programs do, in a ``PipelineOptions`` subclass whose ``_add_argparse_args``
adds them to an argparse parser; ``view_as(TheSubclass)`` reads them. An option that
neither the program, Beamline's Python SDK nor the runner declares is a ValueError naming
it (with the closest known name) when the pipeline is built, and ``--help`` prints them all.
"""

import argparse

# Options of the Python SDK itself: (name, kind, help).
SDK_OPTIONS = [
    ("python_workers", "int", "run element-wise Python stages in N worker processes"),
]

# Beam options that ported programs pass and that have no effect on Beamline's runners.
BEAM_COMPAT_OPTIONS = [
    ("save_main_session", "flag"),
    ("pickle_library", "text"),
    ("job_name", "text"),
    ("temp_location", "text"),
    ("staging_location", "text"),
    ("project", "text"),
    ("region", "text"),
    ("setup_file", "text"),
    ("requirements_file", "text"),
    ("sdk_location", "text"),
    ("experiments", "text"),
    ("direct_num_workers", "int"),
    ("direct_running_mode", "text"),
    ("allow_unsafe_triggers", "flag"),
    ("type_check_strictness", "text"),
]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _program_parser():
    """An argparse parser with the options of every ``PipelineOptions`` subclass."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    seen = set()
    for sub in _subclasses(PipelineOptions):
        if "_add_argparse_args" not in sub.__dict__ or sub in seen:
            continue
        seen.add(sub)
        try:
            sub._add_argparse_args(parser)
        except argparse.ArgumentError:
            pass  # two views declaring the same option: the first one wins
    return parser


def _kind(action):
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "flag"
    if action.type is int:
        return "int"
    return "text"


class PipelineOptions:
    """Command-line style options: ``PipelineOptions(["--runner=local"], threads=2)``."""

    def __init__(self, flags=None, **kwargs):
        if isinstance(flags, PipelineOptions):
            flags = flags._args
        self._args = list(flags or [])
        for key, value in kwargs.items():
            if value is True:
                self._args.append(f"--{key}")
            else:
                self._args.append(f"--{key}={value}")

    def view_as(self, cls):
        """These options seen as ``cls`` (``StandardOptions`` or a subclass of yours)."""
        if cls is StandardOptions:
            return StandardOptions(self)
        return _View(self, cls)

    def _set(self, name, value):
        """Sets (or with None removes) the option ``--name``."""
        flag = "--" + name.replace("_", "-")
        self._args = [a for a in self._args if a.split("=", 1)[0] not in (flag, "--" + name)]
        if value == "true":
            self._args.append(flag)
        elif value is not None:
            self._args.append(f"{flag}={value}")

    def get_all_options(self):
        """The options given, as a dict of ``name -> value`` strings."""
        out = {}
        args = self._args
        i = 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                if not eq:
                    # `--name value`, as the Rust parser reads it.
                    if i + 1 < len(args) and not args[i + 1].startswith("--"):
                        i += 1
                        value = args[i]
                    else:
                        value = "true"
                out[name.replace("-", "_")] = value
            i += 1
        return out

    def _declared(self):
        """Options the program and the Python SDK declare, as ``(name, kind, help)``."""
        out = []
        for action in _program_parser()._actions:
            for opt in action.option_strings:
                if opt.startswith("--"):
                    out.append((opt[2:].replace("-", "_"), _kind(action), action.help or ""))
        out += SDK_OPTIONS
        out += [(n, k, "accepted for Beam compatibility; no effect here") for n, k in BEAM_COMPAT_OPTIONS]
        return out

    def __getattr__(self, name):
        # As in Beam: every declared option is an attribute (its default when not given).
        if name.startswith("_"):
            raise AttributeError(name)
        known, _ = _program_parser().parse_known_args(self._args)
        if hasattr(known, name):
            return getattr(known, name)
        raise AttributeError(f"no pipeline option '{name}' is declared")

    def __repr__(self):
        return f"PipelineOptions({self._args!r})"


class _View:
    """A subclass's options read from the flags (defaults from its argparse declarations)."""

    def __init__(self, options, cls):
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        add = getattr(cls, "_add_argparse_args", None)
        if add is not None:
            add(parser)
        known, _ = parser.parse_known_args(options._args)
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_values", vars(known))

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        self._values[name] = value
        self._options._set(name, "true" if value is True else (None if value is False else value))


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
