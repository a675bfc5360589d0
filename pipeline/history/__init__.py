"""Historical embeddings on disk for `gstore train --method history` (GAS and ScalableGCN).

arrays.py: the per-layer history (and gradient) files; stage.py: the pull stage, the background
writer and the determinism rule; batches.py: the 1-hop batches; fill.py: the layer-wise fill;
snapshot.py: checkpoint snapshots. The torch side is train/history.py.
"""
