"""Kaiwa's real-time layer: how a frame enters, is stored and leaves.

In the order a message travels (docs/architecture.md has the diagram):

- ``consumers``: the WebSocket consumer of ``/ws/chat/<room>/`` (the
  protocol: a handler per frame type) on ``base``'s socket plumbing;
- ``admission``: handshakes authenticated and admitted in batches;
- ``writer``: posts stored in batches on the write pool (``executors``),
  through the domain's services;
- ``publish``: the one module the domain imports, called on commit;
- ``layer``: what crosses the channel layer between processes;
- ``hub``: one per process, a ``feed`` per room with local sockets;
- ``feed``: a room's events in ``seq`` order, gaps filled, memory kept;
- ``outbox``: each socket's bounded outbound buffer, the last step.

Beside the path: ``read_positions`` (``read`` frames merged and stored),
``presence``, ``limits`` and ``cluster_limits`` (flood limits), ``lifespan``,
``loops`` (per-event-loop state and batching), ``relay`` (control events
through the database for processes without a shared layer) and
``middleware``.
"""
