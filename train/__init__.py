"""gstore.train: GNN models and the trainer (built on gstore.pipeline's loader)."""
