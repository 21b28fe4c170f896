"""What a team would pick instead of labkit, run on the same workloads (never in ``--quick``).

- :mod:`.node`: Node's ``ws`` library (``benchmarks/node_ws/server.js``), installed with
  ``npm install --prefix benchmarks/node_ws`` the first time a full run needs it.
- :mod:`.socketio`: python-socketio with its Redis manager, served by its asyncio (aiohttp)
  server (:mod:`.socketio_server`) and driven by its own client (:mod:`.socketio_client`).
"""
