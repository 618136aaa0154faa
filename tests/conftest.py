"""Every test (and every `qa` process a test starts) keeps its default collection in a temporary data
directory, never in the user's own ($QA_DATA_DIR, see api/settings.py)."""

import atexit
import os
import shutil
import tempfile

_data_dir = tempfile.mkdtemp(prefix="qa-test-data-")
atexit.register(shutil.rmtree, _data_dir, True)
os.environ["QA_DATA_DIR"] = _data_dir
