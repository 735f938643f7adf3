"""The ``beamline`` console script: the Rust ``beamline`` command inside this package."""

import signal
import sys


def main():
    """Runs ``beamline`` with the command line; exits with its code."""
    from beamline import _native

    # A command-line tool dies on Ctrl-C (``beamline ui`` serves until stopped); a job
    # it runs handles the signal itself (a streaming job drains).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.cli_main(["beamline"] + sys.argv[1:]))


if __name__ == "__main__":
    main()
