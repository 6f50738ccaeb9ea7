"""The fan-out benchmark: Kaiwa against the seed tutorial's consumer and a raw
ASGI broadcast app, side by side on the same ASGI server (see docs/benchmarks.md).

Run from the checkout as ``.venv/bin/python -m bench`` (bench.runner), with the
``bench`` optional dependencies. Not part of Kaiwa's wheel and no Django app:
its helpers in Kaiwa's database (bench.tokens, bench.steps) are scripts the
runner starts in each target's environment.
"""
