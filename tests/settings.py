"""Settings of the pytest process: Kaiwa's own, with a test secret and plain HTTP.

Debug is off, as in production (``config.settings`` fails closed); Kaiwa
processes that tests start get the same through ``tests.kaiwa_process.base_env``.
"""

import os
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-" + "k" * 40)
os.environ.setdefault("KAIWA_HTTPS", "0")
os.environ.setdefault("KAIWA_DATA_DIR", os.path.join(tempfile.gettempdir(), "kaiwa-tests"))

from config.settings import *  # noqa: F403

os.makedirs(os.environ["KAIWA_DATA_DIR"], exist_ok=True)

# `presence` frames arrive on their own schedule (kaiwa.chat.presence): tests
# that script exact frame sequences would race them. Presence is still
# tracked; the presence tests (tests/chat/test_presence.py, the cluster test)
# turn the frames on.
KAIWA_PRESENCE_MAX_MEMBERS = 0
