"""gstore.pipeline.loader: the prefetching mini-batch loaders (docs/loader.md)."""
from gstore.pipeline.loader.batch import Batch, BatchStats, LayerBlock
from gstore.pipeline.loader.loader import ClusterLoader, NeighborLoader
from gstore.pipeline.loader.rows import RowLoader

__all__ = ["Batch", "BatchStats", "LayerBlock", "ClusterLoader", "NeighborLoader", "RowLoader"]
