"""otel-benchlab: what each stage of a pipeline costs in time, power and energy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("otel-benchlab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
