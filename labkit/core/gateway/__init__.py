"""The gateway as a state machine with no I/O: events in, ordered actions out.

Start at :mod:`labkit.core.gateway.machine`; the events and actions are in
:mod:`labkit.core.gateway.events`.
"""

from labkit.core.gateway.events import *  # noqa: F403
from labkit.core.gateway.machine import GatewayMachine, Observer, token_checker
from labkit.core.gateway.state import ConnState, MachineConfig, Phase

__all__ = [  # noqa: F405
    "Action",
    "Append",
    "Appended",
    "Broadcast",
    "BufferLevel",
    "BusMessage",
    "Close",
    "Closed",
    "ConnId",
    "ConnState",
    "Disconnect",
    "Drain",
    "Event",
    "ExpirePresence",
    "GatewayMachine",
    "Heartbeat",
    "IsMember",
    "JoinChannel",
    "LeaveChannel",
    "MachineConfig",
    "Observer",
    "Opened",
    "Phase",
    "Publish",
    "ReadChannels",
    "ReadHistory",
    "ReadPresence",
    "ReadRange",
    "ReadStates",
    "Received",
    "Reply",
    "Request",
    "Resync",
    "Send",
    "StoreOp",
    "Subscribe",
    "Tick",
    "Unsubscribe",
    "WatchWritable",
    "Writable",
    "token_checker",
]
