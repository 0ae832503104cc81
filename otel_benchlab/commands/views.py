"""What the view commands (``report``, ``compare``, ``sessions``) share: sessions opened by
folder or store address, the ``--pair`` and ``--endpoint`` options, and files written whole."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path


def pairs_of(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    return [tuple(p) for p in args.pair] if args.pair else None


def write_text(path: str, text: str) -> None:
    from otel_benchlab.session.temp_files import replace_with

    replace_with(Path(path), text.encode())


STORE_HELP = ("A SESSION is a folder or a session in an object store "
              "(s3://BUCKET/PREFIX/kind=aligned/node=N/date=D/session=ID, as `otel-benchlab "
              "sessions` lists it, or PREFIX/session=ID).")


def endpoint_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", metavar="URL", help="an S3-compatible store's address "
                   "(env BENCHLAB_UPLOAD_ENDPOINT, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")


WHEN_HELP = ("ISO 8601 with an offset or Z (2026-12-07T14:00:00Z), or a duration back "
             "from the session's end (30m, 1h, 2d)")


def window_options(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--since", metavar="TIME", help=f"only rows from this time{what}: "
                   + WHEN_HELP)
    p.add_argument("--until", metavar="TIME", help=f"only rows before this time{what}")


def open_views(stack: contextlib.ExitStack, addresses: list[str],
               args: argparse.Namespace, first_window: tuple[str, str] | None = None,
               digest_over: int | None = None) -> list:
    """Each session's view; a stored one is read from a copy kept for the command's run
    and named by the address it was given. ``--since``/``--until`` choose the rows; the
    first session's come from the ``first_window`` options instead where given.
    ``digest_over``: past this many rows a session is digested (the report)."""
    from otel_benchlab.fleet.dataset import is_store_address, session_folder
    from otel_benchlab.views.sessions import load_session

    views = []
    for i, address in enumerate(addresses):
        since, until = getattr(args, "since", None), getattr(args, "until", None)
        flags = ("--since", "--until")
        if i == 0 and first_window is not None:
            picked = [getattr(args, name.lstrip("-").replace("-", "_")) for name in
                      first_window]
            if any(v is not None for v in picked):
                since, until = picked
                flags = first_window
        folder = session_folder(address, args.endpoint or "", since, until)
        view = load_session(stack.enter_context(folder), pairs_of(args), since, until, flags,
                            digest_over)
        if is_store_address(address):
            view.path = address
        views.append(view)
    return views
