"""The history loader: 1-hop batches with their pulled history rows, and the background writer.

    inner loader (1-hop batches, CPU) --(pull thread)--> q_out --> trainer
    trainer --submit(HistoryWrites)--> q_jobs --(writer thread)--> history files

The pull thread reads, for batch k, every hidden layer's rows of its halo H_k (and, with gradient
stores, the gradient rows of its in-batch nodes B_k) while the trainer computes an earlier batch;
the writer applies each batch's pushes (h_l[B] -> emb_l[B]) and gradient writes (grad_l[B] = 0,
grad_l[H] += d loss / d emb_l[H]) on its own thread, at the same time.

Determinism rule: the result equals the serial semantics "batch k sees every write of batches
< k", whatever the thread timing. Pull k must read the state after the writes of batches <= k-2:
- it starts once the writes of batches <= k-3 are applied, and reads at once every row that the
  writes of batch k-2 do not touch (W_{k-2}: B_{k-2} in the embedding stores, B_{k-2} u H_{k-2}
  in the gradient stores, known from the batch it pulled two batches ago), WHILE those writes run:
  disjoint rows, so no race and the same values as after them;
- the rows in W_{k-2} (a handful: two random batches share few nodes) it reads once the writes of
  batch k-2 are applied (`late_rows` counts them);
- the write of batch k-1 waits until pull k has read, so pull k never sees it.
The trainer then overlays batch k-1's writes, which it still holds in memory, onto the rows of
batch k (`overlay`: sorted ids, searchsorted), with the same quantisation and the same float32
additions the writer uses, so the rows equal the serial ones bit for bit. Each pass (epoch) ends
with every write applied. So the writes of batch k-2 and the reads of batch k run at once (before,
they took turns: pull, write, pull, write, while one training step ran), and the pull thread can
run up to two batches ahead of the trainer.

Bounded queues (pipeline/loader/queues.py) carry a worker's exception to the trainer, raised as
LoaderError at its next batch or at `submit` / `flush`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
from gstore.errors import LoaderError
from gstore.pipeline.history.arrays import HistoryArrays
from gstore.pipeline.history.history_kernels import member_mask
from gstore.pipeline.loader.batch import Batch
from gstore.pipeline.loader.queues import POLL_S, PipelineControl, StageQueue, StageThread
from gstore.pipeline.loader.state import LoaderState

log = logging.getLogger(__name__)

_END = object()
JOBS_IN_FLIGHT = 2
JOIN_TIMEOUT_S = 30.0


@dataclass
class HistoryBatch(Batch):
    """A 1-hop batch: nodes = B (the first num_seeds rows) then the halo H; blocks[0] is (B u H -> B).

    seq: position in this pass; batch_ids / halo_ids: int64 dense ids of B and H (numpy views);
    halo_rows: per hidden layer l, float32 (|H|, width_l) emb_l[H]; grad_rows: per layer float32
    (|B|, width_l) grad_l[B] (gradient stores only, else empty); applied: how many of this pass's
    write jobs the files held when the rows were read (overlay adds the rest).
    """

    seq: int = 0
    batch_ids: np.ndarray | None = None
    halo_ids: np.ndarray | None = None
    halo_rows: list = field(default_factory=list)
    grad_rows: list = field(default_factory=list)
    applied: int = 0


@dataclass
class HistoryWrites:
    """What one trained batch writes: pushes per layer (|B|, width) in the store's dtype; with
    gradient stores, grads per layer float32 (|H|, width) to add at halo_ids (B's rows are reset)."""

    seq: int
    batch_ids: np.ndarray
    pushes: list
    halo_ids: np.ndarray
    grads: list | None = None


@dataclass
class HistoryIOStats:
    """Where a pass's history I/O time went (bench/history_io.py reports it).

    pull_s / write_s: seconds the pull / write thread spent reading / writing rows; pull_wait_s /
    write_wait_s: seconds each waited on the other (determinism rule); rows_read / rows_written:
    row reads (emb_l[H], grad_l[B], the grad_l[H] of an add) and row writes, summed over layers;
    bytes_read / bytes_written: their bytes; minor_faults / major_faults: page faults the row
    reads and writes took (RUSAGE_THREAD of the I/O threads), i.e. what the file mapping costs."""

    batches: int = 0
    pull_s: float = 0.0
    write_s: float = 0.0
    pull_wait_s: float = 0.0
    write_wait_s: float = 0.0
    rows_read: int = 0
    rows_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    minor_faults: int = 0
    major_faults: int = 0
    halo_pages: int = 0          # distinct 4 KiB file pages under the halo rows read, summed over layers
    overlapped_pulls: int = 0    # pulls that read while the writes of the batch two before ran
    late_rows: int = 0           # rows such pulls read only after those writes (they touch them)
    prefetch_s: float = 0.0      # seconds the files' read-ahead took (0: not done, too large)

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "HistoryIOStats":
        return HistoryIOStats(**{f.name: type(f.default)(d[f.name]) for f in fields(HistoryIOStats)})


def _distinct_pages(ids: np.ndarray, row_bytes: int) -> int:
    """File pages (4 KiB) holding the first byte of rows `ids` (exact for rows that divide a page)."""
    return int(len(np.unique(ids * row_bytes >> 12))) if len(ids) else 0


def overlay(batch: HistoryBatch, w: HistoryWrites) -> None:
    """Apply `w` (the previous batch's writes) to `batch`'s pulled rows in place, exactly as the
    writer applies it to the files (see the module docstring)."""
    order = np.argsort(w.batch_ids, kind="stable")
    sorted_b = w.batch_ids[order]

    def find(ids: np.ndarray, sorted_ids: np.ndarray):
        if not len(sorted_ids) or not len(ids):
            return np.zeros(len(ids), bool), np.zeros(0, np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        hit = sorted_ids[pos] == ids
        return hit, pos[hit]

    hit, pos = find(batch.halo_ids, sorted_b)
    if hit.any():
        src = order[pos]
        for rows, push in zip(batch.halo_rows, w.pushes):
            rows[hit] = push[src]          # float16 -> float32: what a read of the file gives
    if w.grads is None or not batch.grad_rows:
        return
    reset, _ = find(batch.batch_ids, sorted_b)
    h_order = np.argsort(w.halo_ids, kind="stable")
    added, hpos = find(batch.batch_ids, w.halo_ids[h_order])
    for rows, g in zip(batch.grad_rows, w.grads):
        rows[reset] = 0.0
        if added.any():
            rows[added] = rows[added] + g[h_order[hpos]]


def as_history_batch(b: Batch, seq: int, loss_mask: bool) -> HistoryBatch:
    """Wrap an inner 1-hop batch (CPU tensors). loss_mask: labels of in-batch nodes outside the
    loader's split become -1 (gas batches hold every node of their clusters; the loss is on the
    train split)."""
    kw = {f.name: getattr(b, f.name) for f in fields(Batch) if f.init}
    hb = HistoryBatch(**kw, seq=seq)
    nodes = b.nodes.numpy()
    hb.batch_ids, hb.halo_ids = nodes[:b.num_seeds], nodes[b.num_seeds:]
    if loss_mask and b.mask is not None and b.y is not None:
        y = b.y.clone()
        y[:b.num_seeds][~b.mask[:b.num_seeds]] = -1
        hb.y = y
    return hb


class _Run:
    """The two threads of one pass and the counters of the determinism rule."""

    def __init__(self, arrays: HistoryArrays, batches, loss_mask: bool, gradients: bool) -> None:
        self.arrays, self.loss_mask, self.gradients = arrays, loss_mask, gradients
        self.control = c = PipelineControl()
        self.q_out = StageQueue(1, c)
        self.q_jobs = StageQueue(JOBS_IN_FLIGHT, c)
        self.cond = threading.Condition()
        self.pulled = 0            # pulls done (batches 0..pulled-1 read)
        self.pulls_ended = False
        self.applied = 0           # write jobs applied (batches 0..applied-1)
        self.last_seq = -1         # the last batch whose writes were submitted
        self._batches = batches
        self.stats = HistoryIOStats()
        self._stats_lock = threading.Lock()
        self._faults0 = tuple(arrays.faults)
        self.threads = [StageThread("history-pull", self._pull, c),
                        StageThread("history-write", self._write, c)]
        # page cache warm-up beside the pulls; not a stage: a failure only costs speed
        self.prefetcher = threading.Thread(target=self._prefetch, name="history-prefetch", daemon=True)

    def _wait(self, ready) -> None:
        with self.cond:
            while not ready():
                self.cond.wait(POLL_S)
                self.control.check()

    def _prefetch(self) -> None:
        t0 = time.perf_counter()
        try:
            if self.arrays.prefetch(self.control.stop):
                self.stats.prefetch_s = time.perf_counter() - t0
        except OSError:
            log.debug("history prefetch failed", exc_info=True)

    def _count_faults(self) -> None:
        mi, ma = self.arrays.faults
        with self._stats_lock:
            self.stats.minor_faults = mi - self._faults0[0]
            self.stats.major_faults = ma - self._faults0[1]

    def _pull(self) -> None:
        it = iter(self._batches)
        try:
            st = self.stats
            written: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # seq -> rows its writes touch
            for k, b in enumerate(it):
                t0 = time.perf_counter()
                self._wait(lambda: self.applied >= k - 2)
                t1 = time.perf_counter()
                hb = as_history_batch(b, k, self.loss_mask)
                del b
                pending = written.pop(k - 2, None)
                if pending is not None and self.applied >= k - 1:
                    pending = None            # batch k-2's writes are applied: nothing to split
                if pending is not None:
                    with self._stats_lock:
                        st.overlapped_pulls += 1
                late = self._read(hb, pending)
                late_wait = 0.0
                if late is not None:      # rows batch k-2 writes: read them once it has
                    t2 = time.perf_counter()
                    self._wait(lambda: self.applied >= k - 1)
                    late_wait = time.perf_counter() - t2
                    late()
                hb.applied = max(0, k - 1)
                written[k] = self._written_rows(hb)
                a = self.arrays
                a.release()
                self._count_faults()
                busy = time.perf_counter() - t1 - late_wait
                nh, nb = len(hb.halo_ids), len(hb.batch_ids) if self.gradients else 0
                pages = sum(_distinct_pages(hb.halo_ids, w * a.emb_itemsize) for w in a.layout.widths)
                with self._stats_lock:       # the writer adds to the same counters
                    st.pull_wait_s += t1 - t0 + late_wait
                    st.pull_s += busy
                    st.batches += 1
                    st.halo_pages += pages
                    for w in a.layout.widths:
                        st.rows_read += nh + nb
                        st.bytes_read += nh * w * a.emb_itemsize + nb * w * 4
                with self.cond:
                    self.pulled = k + 1
                    self.cond.notify_all()
                self.q_out.put(hb)
                del hb
        finally:
            with self.cond:
                self.pulls_ended = True
                self.cond.notify_all()
            close = getattr(it, "close", None)
            if close is not None:
                close()
        self.q_out.put(_END)

    def _written_rows(self, hb: HistoryBatch) -> tuple[np.ndarray, np.ndarray]:
        """Sorted rows batch hb's writes will touch: (embedding stores: B, gradient stores: B u H)."""
        b = np.sort(hb.batch_ids)
        return b, (np.union1d(b, hb.halo_ids) if self.gradients else b)

    def _read(self, hb: HistoryBatch, pending: tuple[np.ndarray, np.ndarray] | None):
        """Pull hb's rows (emb_l[H], grad_l[B]) into new arrays on hb. `pending`: the rows that the
        writes of batch seq-2 touch, which may still be running: rows outside them are read now,
        and a function reading the rest is returned (call it once those writes are applied), or
        None when nothing is left."""
        a = self.arrays
        L = a.num_layers
        H, B = hb.halo_ids, hb.batch_ids
        if pending is None:
            hb.halo_rows = [a.read_emb(l, H) for l in range(L)]
            if self.gradients:
                hb.grad_rows = [a.read_grad(l, B) for l in range(L)]
            return None
        emb_hit, grad_hit = np.empty(len(H), bool), np.empty(len(B), bool)
        n_emb = member_mask(H, pending[0], emb_hit)
        n_grad = member_mask(B, pending[1], grad_hit) if self.gradients else 0
        with self._stats_lock:
            self.stats.late_rows += L * (n_emb + n_grad)
        hb.halo_rows = [self._read_part(a.read_emb, l, H, ~emb_hit if n_emb else None, a.layout.widths[l])
                        for l in range(L)]
        if self.gradients:
            hb.grad_rows = [self._read_part(a.read_grad, l, B, ~grad_hit if n_grad else None,
                                            a.layout.widths[l]) for l in range(L)]
        if not n_emb and not n_grad:
            return None

        def late() -> None:
            for l in range(L):
                if n_emb:
                    hb.halo_rows[l][emb_hit] = a.read_emb(l, H[emb_hit])
                if n_grad:
                    hb.grad_rows[l][grad_hit] = a.read_grad(l, B[grad_hit])
        return late

    @staticmethod
    def _read_part(read, layer: int, ids: np.ndarray, keep: np.ndarray | None, width: int) -> np.ndarray:
        """read(layer, ids) when keep is None, else float32 (len(ids), width) holding read(layer,
        ids[keep]) at the rows of keep (the others filled later)."""
        if keep is None:
            return read(layer, ids)
        out = np.empty((len(ids), width), np.float32)
        out[keep] = read(layer, ids[keep])
        return out

    def _write(self) -> None:
        a = self.arrays
        while True:
            job = self.q_jobs.get()
            if job is _END:
                return
            # the write of batch j waits for pull j+1 (which must see the files without it)
            t0 = time.perf_counter()
            self._wait(lambda: self.pulled >= job.seq + 2 or self.pulls_ended)
            t1 = time.perf_counter()
            for l, rows in enumerate(job.pushes):
                a.write_emb(l, job.batch_ids, rows)
            if job.grads is not None:
                for l, g in enumerate(job.grads):
                    a.reset_grad(l, job.batch_ids)
                    a.add_grad(l, job.halo_ids, g)
            a.release()
            self._count_faults()
            st = self.stats
            nb, nh = len(job.batch_ids), len(job.halo_ids) if job.grads is not None else 0
            g = 0 if job.grads is None else nb + nh         # gradient rows reset or added
            with self._stats_lock:
                st.write_wait_s += t1 - t0
                st.write_s += time.perf_counter() - t1
                for w in a.layout.widths:
                    st.rows_written += nb + g
                    st.rows_read += nh                       # an add reads its rows first
                    st.bytes_written += nb * w * a.emb_itemsize + g * w * 4
                    st.bytes_read += nh * w * 4
            with self.cond:
                self.applied = job.seq + 1
                self.cond.notify_all()
            del job

    def raise_failure(self) -> None:
        f = self.control.failure
        if f is not None:
            raise LoaderError(f"history stage {f.stage!r} failed: {f.exc!r}") from f.exc

    def next(self):
        while True:
            self.raise_failure()
            try:
                got = self.q_out.poll()
            except queue.Empty:
                continue
            return None if got is _END else got

    def submit(self, job: HistoryWrites) -> None:
        self.raise_failure()
        self.last_seq = job.seq
        self.q_jobs.put(job)

    def flush(self) -> None:
        """Block until every submitted write is applied (a failed writer raises here)."""
        while True:
            self.raise_failure()
            with self.cond:
                if self.applied >= self.last_seq + 1:
                    return
                self.cond.wait(POLL_S)

    def close(self) -> None:
        self.control.stop.set()
        for t in self.threads + [self.prefetcher]:
            if t.is_alive() and t is not threading.current_thread():
                t.join(JOIN_TIMEOUT_S)
        self.q_out.drain()
        self.q_jobs.drain()


class HistoryLoader:
    """1-hop batches of `inner` (a StagedLoader delivering CPU batches) with pulled history rows.

    Acts as the run's training loader (len, set_epoch, state_dict, load_state_dict, config) and
    takes the trainer's writes (`submit`). `arrays` is attached once the run directory exists.
    loss_mask: gas (labels outside the split masked, see as_history_batch).
    """

    def __init__(self, inner, *, loss_mask: bool, gradients: bool) -> None:
        self.inner = inner
        self.loss_mask, self.gradients = bool(loss_mask), bool(gradients)
        self.arrays: HistoryArrays | None = None
        self._epoch, self._consumed = 0, 0
        self._run: _Run | None = None
        self.io_stats = HistoryIOStats()     # of the last (or current) pass

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def epoch(self) -> int:
        return self._epoch

    def config(self):
        return self.inner.config()

    def set_epoch(self, epoch: int) -> None:
        self._epoch, self._consumed = int(epoch), 0

    def state_dict(self) -> dict:
        # the pull thread runs one batch ahead of the trainer: the inner loader's own count would
        # say one batch too many, so the state is the trainer's
        return LoaderState(self._epoch, self._consumed, self.inner.config()).to_json()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)
        saved = LoaderState.from_json(state)
        self._epoch, self._consumed = saved.epoch, saved.batches_consumed

    def submit(self, job: HistoryWrites) -> None:
        if self._run is None:
            raise LoaderError("history writes outside a pass of the history loader")
        self._run.submit(job)

    def flush(self) -> None:
        """Every write of the current pass applied (before a checkpoint snapshots the files)."""
        if self._run is not None:
            self._run.flush()
        if self.arrays is not None:
            self.arrays.flush()

    def __iter__(self):
        if self.arrays is None:
            raise LoaderError("the history loader has no history arrays attached")
        if self._consumed >= len(self):
            self._epoch, self._consumed = self._epoch + 1, 0
        self.inner.load_state_dict(LoaderState(self._epoch, self._consumed, self.inner.config()).to_json())
        return self._iterate()

    def _iterate(self):
        run = _Run(self.arrays, self.inner, self.loss_mask, self.gradients)
        self._run = run
        self.io_stats = run.stats
        for t in run.threads:
            t.start()
        run.prefetcher.start()
        finished = False
        try:
            while True:
                hb = run.next()
                if hb is None:
                    break
                self._consumed = hb.index + 1
                yield hb
                del hb
            run.flush()
            finished = True
            self._epoch, self._consumed = self._epoch + 1, 0
        finally:
            if not finished and run.control.failure is None:
                # left early (a break, an exception in the step): apply what was submitted, so the
                # files hold exactly the writes of the batches the trainer finished
                try:
                    run.flush()
                except Exception:  # noqa: BLE001 - the caller's exception is the one to see
                    log.debug("history writer failed while stopping", exc_info=True)
            run.close()
            self._run = None

