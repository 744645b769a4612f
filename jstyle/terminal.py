"""What every command-line entry point shares: argument errors as one line, the exit codes,
and Ctrl-C / SIGTERM.

``python -m jstyle.run``, ``python -m jstyle.figures``, ``python -m jstyle.bench`` and
``scripts/convert_vgg_weights.py`` all run through :func:`main`: a bad argument or a
:class:`jstyle.errors.JStyleError` is one line on stderr, ``<prog>: error: <problem and
fix>``, and exit code 2; an interrupt is exit code 130. During a transfer, SIGINT and SIGTERM
ask the engine to stop at the end of its current chunk of iterations
(:func:`jstyle.engine.request_stop`), so the run saves what it has; a second one quits at
once without saving. Before a transfer starts they raise ``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence

from jstyle.errors import JStyleError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "EXIT_STOPPED", "Parser", "main"]

#: Exit codes: bad input (nothing was run), stopped early (a non-finite loss; the last finite
#: image is saved), interrupted (what the run had is saved; ``--resume`` continues it).
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 1
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one :class:`JStyleError` line naming ``--help``."""

    def error(self, message: str):
        raise JStyleError(f"{message} (see {self.prog} --help)")


def _stop_or_interrupt(signum, frame) -> None:
    """SIGINT and SIGTERM: during a transfer, a stop at the end of the current chunk of
    iterations (a second one quits at once, saving nothing); else KeyboardInterrupt."""
    engine = sys.modules.get("jstyle.engine")  # loaded once a transfer can run
    if engine is None or not engine.running():
        raise KeyboardInterrupt
    if engine.stop_requested():
        print("jstyle: interrupted again: quitting without saving", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)
    engine.request_stop(signum)
    print("jstyle: stopping at the end of this chunk of iterations, then saving (interrupt "
          "again to quit without saving)", file=sys.stderr, flush=True)


def main(parser: Callable[[], argparse.ArgumentParser],
         body: Callable[[argparse.Namespace], int], argv: Sequence[str] | None = None, *,
         name: str | None = None, interrupted: str = "interrupted") -> int:
    """Parse ``argv`` with ``parser()`` and return ``body(args)``'s exit code, with every
    error one line prefixed by ``name`` (default: the parser's prog) and exit code 2, and an
    interrupt exit code 130 (``interrupted`` says what became of the work). ``args.debug``,
    where the parser has it, lets errors raise with their tracebacks."""
    p = parser()
    name = name or p.prog
    try:
        args = p.parse_args(argv)
    except JStyleError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    debug = getattr(args, "debug", False)
    # Ctrl-C must save the run even where the shell started us with SIGINT ignored (a
    # background job of a script), and SIGTERM is handled the same way.
    previous = {sig: signal.signal(sig, _stop_or_interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return body(args)
    except JStyleError as e:
        if debug:
            raise
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{name}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
