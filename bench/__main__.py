"""``python -m bench [options]``: the benchmark's one command (bench.runner)."""

import sys

from bench.runner import main

sys.exit(main())
