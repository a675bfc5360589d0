import sys
from pathlib import Path

# tests import their shared factories (store_factory, reference twins) as plain modules
sys.path.insert(0, str(Path(__file__).parent))

import subprocess  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def sleeper():
    """A live process other than this one: the owner of scratch that must not be reclaimed."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()
