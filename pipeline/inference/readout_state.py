"""The read-out state of layer-wise inference (jumping knowledge, readout_dim > 0): one float32
row per node, (N, readout_dim), in a raw file of the run's scratch dir, read and written a chunk of
rows at a time with pread/pwrite (each chunk is one contiguous run of rows)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from gstore.errors import StoreError


class ReadoutState:
    """The state file `path` of `num_nodes` x `dim` float32 rows."""

    def __init__(self, path: Path, num_nodes: int, dim: int) -> None:
        self.path, self.num_nodes, self.dim = Path(path), int(num_nodes), int(dim)

    def create(self) -> None:
        """Allocate the file (sparse: zeros until written)."""
        with open(self.path, "wb") as fh:
            fh.truncate(self.num_nodes * self.dim * 4)

    def read(self, start: int, rows: int, device: torch.device) -> torch.Tensor:
        """Rows [start, start + rows) as a float32 tensor on `device`."""
        buf = np.empty((rows, self.dim), dtype=np.float32)
        view, offset, done = memoryview(buf).cast("B"), start * self.dim * 4, 0
        fd = os.open(self.path, os.O_RDONLY)
        try:
            while done < len(view):
                got = os.preadv(fd, [view[done:]], offset + done)
                if got == 0:
                    raise StoreError(f"read-out state ends early at byte {offset + done}", path=self.path)
                done += got
        finally:
            os.close(fd)
        return torch.from_numpy(buf).to(device)

    def write(self, start: int, state: torch.Tensor) -> None:
        """Rows [start, start + len(state)) from `state` ((rows, dim), any float dtype and device)."""
        arr = np.ascontiguousarray(state.detach().to("cpu", torch.float32).numpy())
        fd = os.open(self.path, os.O_WRONLY)
        try:
            view, offset, done = memoryview(arr).cast("B"), start * self.dim * 4, 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)
        finally:
            os.close(fd)
