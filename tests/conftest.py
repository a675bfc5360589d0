import sys
from pathlib import Path

# tests import their shared factories (store_factory, reference twins) as plain modules
sys.path.insert(0, str(Path(__file__).parent))
