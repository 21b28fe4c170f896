"""Record ``tests/data/gateway_machine.jsonl``: a live gateway's events and actions, through its
observer, while two users go through every kind of request. ``tests/test_gateway_machine.py``
replays it into a bare machine. Run: ``.venv/bin/python tests/record_machine_log.py``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from wire import post, raw_user

from labkit.core.gateway import log as machine_log

LOG = Path(__file__).parent / "data" / "gateway_machine.jsonl"
SECRET = "machine-test-secret"


async def record() -> None:
    import labkit
    from labkit.server.gateway import GatewayConfig

    config = GatewayConfig(heartbeat_s=5.0, head_check_s=0.2)
    lines: list[str] = []
    async with labkit.Cluster(gateways=1, secret=SECRET, config=config) as cluster:
        gateway = cluster.gateways[0]
        assert gateway is not None
        mc = gateway.machine.config
        header = {
            "secret": SECRET,
            "config": {
                "name": mc.name,
                "heartbeat_s": mc.heartbeat_s,
                "head_check_s": mc.head_check_s,
                "hello_timeout_s": mc.hello_timeout_s,
            },
        }
        lines.append(json.dumps(header))
        gateway.observers.append(lambda e, a: lines.append(machine_log.dumps(e, a)))
        alice = await raw_user(cluster, "alice", 0)
        bob = await raw_user(cluster, "bob", 0)
        await post(alice, "a1", "general", "hello")
        await bob.expect("message", channel="general", seq=1)
        await bob.send({"type": "presence_sub", "id": "s1", "users": ["alice", "carol"]})
        await bob.expect("presence", user="alice")
        await bob.expect("presence", user="carol")
        await bob.send({"type": "join", "id": "j1", "channel": "design"})
        await bob.expect("joined", id="j1", channel="design")
        await alice.send({"type": "typing", "id": "t1", "channel": "general"})
        await bob.expect("typing", channel="general", user="alice")
        await bob.send({"type": "history", "id": "h1", "channel": "general", "after": 0})
        await bob.expect("history", id="h1")
        await bob.send({"type": "leave", "id": "l1", "channel": "design"})
        await bob.expect("left", id="l1")
        await alice.send({"type": "ping", "id": "p1"})
        await alice.expect("pong", id="p1")
        await alice.close()
        await asyncio.sleep(0.5)  # a few ticks and head checks
        await bob.close()
        await asyncio.sleep(0.1)
    LOG.parent.mkdir(exist_ok=True)
    LOG.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    asyncio.run(record())
