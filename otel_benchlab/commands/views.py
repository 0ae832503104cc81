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


def open_views(stack: contextlib.ExitStack, addresses: list[str],
           args: argparse.Namespace) -> list:
    """Each session's view; a stored one is read from a copy kept for the command's run
    and named by the address it was given."""
    from otel_benchlab.fleet.dataset import is_store_address, session_folder
    from otel_benchlab.views.sessions import load_session

    views = []
    for address in addresses:
        view = load_session(stack.enter_context(session_folder(address, args.endpoint or "")),
                            pairs_of(args))
        if is_store_address(address):
            view.path = address
        views.append(view)
    return views
