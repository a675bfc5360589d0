"""gstore: an out-of-core graph store and GNN data pipeline.

    import gstore
    g = gstore.open("store/")
    g.num_nodes, g.indptr, g.indices, g.features, g.split("train")
"""
from __future__ import annotations

__version__ = "0.1.0"

from gstore.errors import GStoreError, InputError, OptionError, StoreError  # noqa: E402
from gstore.store import GraphStore, open  # noqa: E402,A004

__all__ = ["GStoreError", "InputError", "OptionError", "StoreError", "GraphStore", "open", "__version__"]
