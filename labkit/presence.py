"""The old import path of :mod:`labkit.core.presence`, kept so that finished exercises still import.

New code imports ``labkit.core.presence``.
"""

from labkit.core.presence import *  # noqa: F403
