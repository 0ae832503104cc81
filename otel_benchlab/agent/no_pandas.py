"""pyarrow without pandas, for the agent's and replay's own processes.

pyarrow imports pandas, where it is installed, on its first conversion of a numpy array or
a Python scalar, only to ask whether that argument is a pandas object; none of ours is.
Where a user installed otel-benchlab beside pandas (to query its Parquet), that import
cost the agent ~34 MB of RSS (152 against 119 MB at the default load) and replay
0.25-0.3 s of its ~2 s for 3 M marks. While a command runs, ``import pandas`` fails as if
it were absent, and pyarrow carries on without it, as it does in a plain install.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from importlib.machinery import ModuleSpec


class _PandasAbsent:
    """A meta-path finder that answers for pandas as if it were not installed. (A None in
    sys.modules does not do: pyarrow's Cython import takes the None for the module.)"""

    def find_spec(self, name: str, path: object = None, target: object = None,
                  ) -> ModuleSpec | None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@contextlib.contextmanager
def pyarrow_without_pandas() -> Iterator[None]:
    """Hide pandas from pyarrow for the block, unless the process already imported it
    (a caller in the same process that uses pandas keeps it). Afterwards ``import pandas``
    works again, and so does pyarrow's ``to_pandas``, which retries the import."""
    if "pandas" in sys.modules:
        yield
        return
    finder = _PandasAbsent()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
