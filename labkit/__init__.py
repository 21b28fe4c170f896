"""labkit: real-time messaging the way Slack does it, small enough to read and run in a notebook."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``labkit.Cluster``, imported on first use (``import labkit`` stays light for the CLI)."""
    if name == "Cluster":
        from labkit.cluster import Cluster

        return Cluster
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
