"""Exercise 8: channel ownership by consistent hashing (how Slack's channel servers split channels).

Task
----
Implement :class:`HashRing`. ``HashRing(nodes, vnodes=100)`` places each node (a server name) at
``vnodes`` points on a ring of hash values; ``owner(key)`` returns the node owning ``key`` (a
channel name): the first point at or after the key's hash, wrapping around past the largest
point. ``add(node)`` and ``remove(node)`` change the ring.

Requirements the checks hold you to:

- the owner depends only on the *set* of nodes (not the order they were given or added), and is
  the same in every process: use a hash from ``hashlib`` (``blake2b``, ``sha1``, ``md5``), never
  Python's ``hash()``, which changes from one process to the next;
- when a node joins a ring of N nodes, about ``K / (N + 1)`` of K keys move, all of them to the
  new node (the checks allow 1.5 times the ideal); when a node leaves, only its keys move, and
  they spread over several nodes rather than all landing on one neighbour;
- with 100 virtual nodes each, every node owns between 0.5 and 1.6 times its fair share;
- adding a node that is already there changes nothing; ``owner`` on an empty ring raises
  ``LookupError``; ``remove`` of a node that is not there raises ``KeyError``.

Why
---
Slack splits channels over "channel servers"; every gateway must agree, without a round trip,
which server owns a channel. ``hash(channel) % N`` agrees, but a deploy that adds one server
moves almost every channel (and each move is a hand-over with a pause). A consistent-hash ring
moves only what the new server takes, and virtual nodes keep the shares even.

Interview angle
---------------
Consistent hashing is a classic: explain why modulo hashing reshuffles everything, why one point
per node gives wildly uneven arcs (and why a failed node's load then lands on a single
neighbour), what virtual nodes cost (memory, O(log(N·V)) lookups), and alternatives (rendezvous
hashing, jump hash, a directory service with explicit assignment as Slack moved towards).

Grade it: ``labkit grade ex08``.
"""

from __future__ import annotations

from collections.abc import Iterable


class HashRing:
    """Nodes on a hash ring at ``vnodes`` points each; a key is owned by the next point."""

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 100) -> None:
        raise NotImplementedError("HashRing.__init__")

    def add(self, node: str) -> None:
        """Put ``node`` on the ring (no change if it is already there)."""
        raise NotImplementedError("HashRing.add")

    def remove(self, node: str) -> None:
        """Take ``node`` off the ring; ``KeyError`` if it is not there."""
        raise NotImplementedError("HashRing.remove")

    def owner(self, key: str) -> str:
        """The node owning ``key``; ``LookupError`` when the ring is empty."""
        raise NotImplementedError("HashRing.owner")
