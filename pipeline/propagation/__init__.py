"""Out-of-core feature propagation (SGC/SIGN precompute): A_hat^k X for k = 1..K into the store.

    from gstore.pipeline.propagation import PropagationParams, propagate, open_propagated
    propagate("g.gstore", PropagationParams(hops=3))            # computes the missing hops
    feats = open_propagated(gstore.open("g.gstore"), PropagationParams(hops=3))
    feats.hops            # [X, A_hat X, A_hat^2 X, A_hat^3 X], (N, F) memory maps

See propagate.py for the store layout, reuse and crash safety, plan.py for the memory plan.
"""
from gstore.memory import DEFAULT_MEMORY_BUDGET
from gstore.pipeline.propagation.params import (MAX_HOPS, HopStats, PropagationParams,
                                                PropagationResult)
from gstore.pipeline.propagation.propagate import PropagatedFeatures, open_propagated, propagate

__all__ = ["DEFAULT_MEMORY_BUDGET", "MAX_HOPS", "HopStats", "PropagatedFeatures", "PropagationParams",
           "PropagationResult", "open_propagated", "propagate"]
