"""Every node's sessions in one object store: the store itself (``store``: pyarrow's file
systems, the hive layout), the upload outbox each session keeps (``outbox``), and reading
the fleet back (``dataset``: list, find, fetch, expire, and ``open_dataset``).

May import the ground floor only. ``open_dataset`` and the other readers are importable
from here (``from otel_benchlab.fleet import open_dataset``); they load pyarrow's dataset
module only when first used.
"""

from __future__ import annotations

from typing import Any

_DATASET_NAMES = ("open_dataset", "list_sessions", "find_session", "fetch_session",
                  "session_folder", "expire_sessions", "is_store_address", "StoredSession")
__all__ = list(_DATASET_NAMES)


def __getattr__(name: str) -> Any:
    if name in _DATASET_NAMES:
        from otel_benchlab.fleet import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'otel_benchlab.fleet' has no attribute {name!r}")
