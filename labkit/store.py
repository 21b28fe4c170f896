"""The old import path of :mod:`labkit.server.redis.store`, kept so that finished exercises still
import.

New code imports ``labkit.server.redis.store``.
"""

from labkit.server.redis.store import *  # noqa: F403
