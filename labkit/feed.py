"""The old import path of :mod:`labkit.core.feed`, kept so that finished exercises still import.

New code imports ``labkit.core.feed``.
"""

from labkit.core.feed import *  # noqa: F403
