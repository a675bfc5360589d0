"""Out-of-core layer-wise inference: every node's embeddings layer by layer, through disk arrays."""
