"""Command line of the studio: ``python -m jstyle.studio [--host H] [--port P]``.

Serves a page to upload a content photo and a style painting, pick a config and the few
keys people change, start a run, watch it form, stop it and download the PNG with its
sidecar; one run at a time, the rest queued (:mod:`jstyle.web.studio`). It listens on
127.0.0.1 unless ``--host`` says otherwise, and says which. Ctrl-C stops the studio; a run
under way is stopped as by Ctrl-C, so it saves and can be resumed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

PROG = "python -m jstyle.studio"


def parser() -> argparse.ArgumentParser:
    """The studio's argument parser."""
    from jstyle.terminal import Parser
    from jstyle.web.studio import MAX_UPLOAD_BYTES, default_configs

    configs = default_configs()
    p = Parser(prog=PROG, description="A local web page to upload a photo and a painting, "
               "start style transfers (one at a time, the rest queued), watch them, stop "
               f"them and download the results. Uploads are limited to "
               f"{MAX_UPLOAD_BYTES // 2**20} MB and must be images.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; "
                   "0.0.0.0 lets any machine that reaches this one upload and run)")
    p.add_argument("--port", type=int, default=0,
                   help="port to listen on (default: 0, a free one; the address is printed)")
    p.add_argument("--workdir", default="out/studio", metavar="DIR",
                   help="where uploads and each run's outputs go (default: out/studio)")
    p.add_argument("--configs", default=str(configs) if configs else None, metavar="DIR",
                   help="folder of YAML configs to offer (default: the source tree's "
                   "configs/)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: serves until interrupted (exit code 130), 2 for bad arguments or a
    port in use."""
    from jstyle import terminal

    return terminal.main(parser, _serve, argv, name="jstyle studio",
                         interrupted="stopped (the runs' outputs stay in the workdir)")


def _serve(args: argparse.Namespace) -> int:
    from jstyle.errors import JStyleError
    from jstyle.web.studio import Studio

    if not 0 <= args.port <= 65535:
        raise JStyleError(f"--port must be 0 to 65535, got {args.port}")
    configs = Path(args.configs) if args.configs else None
    if configs is not None and not configs.is_dir():
        raise JStyleError(f"config folder {configs} not found; give one with --configs")
    studio = Studio(args.host, args.port, Path(args.workdir), configs)
    reach = "this machine only; --host 0.0.0.0 to open it to others" if studio.local else \
        f"reachable from other machines on {args.host}: anyone who can reach it can upload " \
        "images and start runs"
    print(f"jstyle studio: open {studio.url} ({reach}); runs go to {args.workdir}; Ctrl-C "
          "stops", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        studio.close()


if __name__ == "__main__":
    sys.exit(main())
