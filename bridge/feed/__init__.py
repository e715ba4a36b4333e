"""The live feed: feed events and the durable event log they are appended to, reading the log
back (``since`` replay, ``GET /events``), the transports that carry committed events between
processes (in memory, Redis), the sequencer that delivers them in id order without gaps, and
the hub that fans them out to this process's WebSocket connections."""
