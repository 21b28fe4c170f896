"""The ``labkit`` command: serve a system, run one gateway, make tokens, chat, open the lab.

Every subcommand has ``--help``. Secrets come from ``--secret``, then ``LABKIT_SECRET``, then
the file ``~/.labkit/secret`` (or ``$LABKIT_HOME/secret``), which ``labkit serve`` creates with a
random secret, readable only by its owner, the first time it runs without one. ``labkit token``
and ``labkit chat`` read the same file, so on one machine they just work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from labkit.cli.arguments import milliseconds, port, positive, probability, user
from labkit.core.auth import DEFAULT_TTL_S, make_token

DEFAULT_PORT = 8700


def labkit_home() -> Path:
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit")


def secret_path() -> Path:
    return labkit_home() / "secret"


def resolve_secret(given: str | None, *, create: bool) -> str:
    """The secret to sign or check tokens with (see the module docstring for the order)."""
    if given:
        return given
    from_env = os.environ.get("LABKIT_SECRET")
    if from_env:
        return from_env
    path = secret_path()
    if path.exists():
        return path.read_text().strip()
    if not create:
        raise SystemExit(
            f"labkit: no secret: pass --secret, set LABKIT_SECRET, or run 'labkit serve' once "
            f"so it creates {path}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    print(f"labkit: created a random secret in {path} (readable only by you)", file=sys.stderr)
    return secret


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="A lab for real-time messaging the way Slack does it.",
        epilog="Start with: labkit serve, then in two more terminals: labkit chat alice, "
        "labkit chat bob",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run a message server and N gateways",
        description="Run a whole system in one process: N gateways on ports P..P+N-1 around one "
        "Redis (the embedded fakeredis unless --redis is given), with the demo workspace "
        "(alice, bob, carol, dave, erin; #general, #random, #eng) seeded if empty. Ctrl-C or "
        "SIGTERM drains the gateways (clients are told to reconnect) and stops.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=port, default=DEFAULT_PORT, help="first gateway's port")
    serve.add_argument("--gateways", type=positive(int), default=2, help="how many gateways")
    serve.add_argument(
        "--impl",
        default="reference",
        help="whose pure pieces run: 'reference' (default), 'exercises' (yours: a piece not "
        "implemented yet falls back to the reference, with a notice), 'solutions', or a folder "
        "laid out like exercises/",
    )
    _add_common_server_options(serve)
    _add_fault_options(serve)

    gateway = sub.add_parser(
        "gateway",
        help="run one gateway process joined to a shared Redis",
        description="Run one gateway in this process, joined to the Redis at --redis. Start "
        "several, on different ports, to form one system across processes.",
    )
    gateway.add_argument("--host", default="127.0.0.1", help="address to listen on")
    gateway.add_argument("--port", type=port, required=True, help="port to listen on")
    gateway.add_argument("--name", default=None, help="gateway name (default gw-PORT)")
    _add_common_server_options(gateway, redis_required=True)

    token = sub.add_parser(
        "token",
        help="print a token for a user",
        description="Print a signed token for USER, valid for --ttl seconds.",
    )
    token.add_argument("user", type=user, metavar="USER")
    token.add_argument("--secret", help="signing secret (default: LABKIT_SECRET or the file)")
    token.add_argument(
        "--ttl", type=positive(float), default=DEFAULT_TTL_S, help="seconds (default 86400)"
    )

    chat = sub.add_parser(
        "chat",
        help="a terminal chat client",
        description="Chat as USER. Lines you type are posted to the current channel. Commands: "
        "/channel NAME (post there), /join NAME, /leave NAME, /history [NAME] [N], /who, "
        "/quit. Messages print as '#channel seq <user> text'.",
    )
    chat.add_argument("user", type=user, metavar="USER")
    chat.add_argument(
        "--url",
        action="append",
        help=f"gateway URL; repeat for failover (default: ports {DEFAULT_PORT} and "
        f"{DEFAULT_PORT + 1} on 127.0.0.1)",
    )
    chat.add_argument("--secret", help="signing secret (default: LABKIT_SECRET or the file)")
    chat.add_argument("--channel", default="general", help="channel to post to at first")
    chat.add_argument(
        "--fresh",
        action="store_true",
        help="ignore what an earlier chat of USER saw (by default a restarted chat resumes from "
        "~/.labkit/chat-USER.json and prints what it missed)",
    )

    sub.add_parser(
        "lab",
        help="open JupyterLab on the notebooks",
        description="Open JupyterLab on the notebooks/ folder of this checkout.",
    )

    grade = sub.add_parser(
        "grade",
        help="grade the exercises",
        description="Grade exercises/ (or solutions/ with --solutions) with the public checks.",
        add_help=False,
    )
    grade.add_argument("rest", nargs=argparse.REMAINDER)

    bench = sub.add_parser(
        "bench",
        help="run the benchmarks",
        description="Measure labkit against baselines; 'labkit bench --help' lists the options.",
        add_help=False,
    )
    bench.add_argument("rest", nargs=argparse.REMAINDER)

    chaos = sub.add_parser(
        "chaos",
        help="break a live cluster on purpose and check every guarantee",
        description="Run a seeded, randomized scenario against a fresh live cluster (faults on "
        "the bus, gateways, Redis and clients) and print the invariant checker's report; exits "
        "1 on any violation. 'labkit chaos --help' lists the options.",
        add_help=False,
    )
    chaos.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _add_common_server_options(
    parser: argparse.ArgumentParser, *, redis_required: bool = False
) -> None:
    parser.add_argument(
        "--redis",
        default=os.environ.get("LABKIT_REDIS_URL"),
        required=redis_required and not os.environ.get("LABKIT_REDIS_URL"),
        help="Redis URL, e.g. redis://127.0.0.1:6379/0 (default: LABKIT_REDIS_URL"
        + (")" if redis_required else ", else the embedded fakeredis)"),
    )
    parser.add_argument("--secret", help="token secret (default: LABKIT_SECRET or the file)")
    parser.add_argument(
        "--heartbeat-s", type=positive(float), default=10.0, help="heartbeat period (10)"
    )


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fault injection on the bus (seeded)")
    group.add_argument("--bus-loss", type=probability, default=0.0, help="loss probability")
    group.add_argument("--bus-dup", type=probability, default=0.0, help="duplication prob.")
    group.add_argument("--bus-reorder", type=probability, default=0.0, help="reorder prob.")
    group.add_argument("--bus-delay-ms", type=milliseconds, default=0.0, help="added delay")
    group.add_argument("--bus-jitter-ms", type=milliseconds, default=0.0, help="random extra delay")
    group.add_argument("--seed", type=int, default=1, help="seed of every fault decision")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser: argparse's REMAINDER drops leading options
        from labkit.bench import main as bench_main

        return int(bench_main(argv[1:]))
    if argv[:1] == ["chaos"]:  # its own parser, like bench
        from labkit.lab.chaos import main as chaos_main

        return int(chaos_main(argv[1:]))
    if argv[:1] == ["grade"]:
        from labkit.grading import main as grade_main

        return int(grade_main(argv[1:]))
    args = build_parser().parse_args(argv)
    if args.command == "token":
        secret = resolve_secret(args.secret, create=False)
        print(make_token(args.user, secret, now=time.time(), ttl_s=args.ttl))
        return 0
    if args.command == "serve":
        from labkit.cli.serve import run_serve

        return asyncio.run(run_serve(args, resolve_secret(args.secret, create=True)))
    if args.command == "gateway":
        from labkit.cli.serve import run_gateway

        return asyncio.run(run_gateway(args, resolve_secret(args.secret, create=True)))
    if args.command == "chat":
        from labkit.cli.chat import run_chat

        urls = args.url or [f"ws://127.0.0.1:{DEFAULT_PORT + i}/ws" for i in range(2)]
        secret = resolve_secret(args.secret, create=False)
        state_file = None if args.fresh else labkit_home() / f"chat-{args.user}.json"
        return asyncio.run(run_chat(args.user, urls, secret, args.channel, state_file))
    if args.command == "lab":
        return open_lab()
    if args.command == "grade":
        from labkit.grading import main as grade_main

        return int(grade_main(args.rest))
    raise AssertionError(args.command)


def open_lab() -> int:
    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    if not notebooks.is_dir():
        notebooks = Path.cwd() / "notebooks"
    if not notebooks.is_dir():
        print("labkit: no notebooks/ folder found next to the package or here", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={notebooks}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI machines often run as root
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
