"""Settings of the pytest process: Kaiwa's own, with a test secret and plain HTTP.

Debug is off, as in production (``config.settings`` fails closed); Kaiwa
processes that tests start get the same through ``tests.kaiwa_process.base_env``.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-" + "k" * 40)
os.environ.setdefault("KAIWA_HTTPS", "0")
# A data directory of this pytest run's own (its SQLite test database lives
# there), so that two runs on one machine never share a database file.
if "KAIWA_DATA_DIR" not in os.environ:
    os.environ["KAIWA_DATA_DIR"] = tempfile.mkdtemp(prefix="kaiwa-tests-")
    atexit.register(shutil.rmtree, os.environ["KAIWA_DATA_DIR"], ignore_errors=True)

from config.settings import *  # noqa: F403

os.makedirs(os.environ["KAIWA_DATA_DIR"], exist_ok=True)

# `presence` frames arrive on their own schedule (kaiwa.chat.realtime.presence): tests
# that script exact frame sequences would race them. Presence is still
# tracked; the presence tests (tests/chat/test_presence.py, the cluster test)
# turn the frames on.
KAIWA_PRESENCE_MAX_MEMBERS = 0
