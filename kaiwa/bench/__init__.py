"""``kaiwa bench``: Kaiwa against the seed tutorial's consumer and a raw ASGI
broadcast app, side by side on the same ASGI server (see docs/benchmarks.md)."""
