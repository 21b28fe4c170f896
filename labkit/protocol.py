"""The old import path of :mod:`labkit.core.protocol`, kept so that finished exercises still import.

New code imports ``labkit.core.protocol``.
"""

from labkit.core.protocol import *  # noqa: F403
