"""The old import path of :mod:`labkit.core.client_state`, kept so that finished exercises still
import.

New code imports ``labkit.core.client_state``.
"""

from labkit.core.client_state import *  # noqa: F403
