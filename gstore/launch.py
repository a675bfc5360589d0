"""`gstore train --nproc N ...`: torchrun's elastic agent started for the user, on this machine.

    gstore train g.gstore -o runs/a --nproc 2      ==   torchrun --standalone --nproc-per-node 2 \\
                                                          -m gstore train g.gstore -o runs/a

The agent (torch.distributed.launcher, what torchrun runs) spawns N fresh interpreters (never a
fork: numba's OpenMP layer aborts a forked child) with the same arguments minus --nproc, rendezvous
on a free local port (`--standalone`), no restarts: a worker that fails makes the agent stop the
others. A rank that exits with an error has printed it (one line): the job exits with its status.
A rank killed by a signal prints nothing: this process prints one line naming it, exit status 1.
Each worker gets the machine's cores divided by N as OMP_NUM_THREADS / NUMBA_NUM_THREADS unless
the user set them. Across machines, run torchrun yourself (docs/distributed.md).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import uuid

from gstore.errors import OptionError

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.5       # how often the agent polls its workers (a dead rank is seen this fast)
SHUTDOWN_TIMEOUT_S = 10        # SIGTERM to SIGKILL for the surviving ranks of a failed job


def passthrough_args(argv: list[str]) -> list[str]:
    """`argv` (gstore's command line after the program name) without `--nproc N` / `--nproc=N`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def worker_env(nproc: int) -> dict[str, str]:
    """Thread counts for the workers: the cores this process may use, divided among them."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    per = str(max(1, cores // nproc))
    return {k: os.environ.get(k, per) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}


def exit_code(failure) -> int:
    """A ProcessFailure's exit status (-N: killed by signal N)."""
    return int(getattr(failure, "exitcode", 1) or 1)


def first_failure(failures: dict) -> tuple[int, object]:
    """(rank, ProcessFailure) of the rank that most likely failed first: one killed by a signal
    (the survivors' collectives failed because it died), then one that exited with an error;
    SIGTERM last, as the agent sends it to the survivors. Ties: earliest, then lowest rank."""
    def cause(code: int) -> int:
        return 0 if code < 0 and code != -signal.SIGTERM else 1 if code > 0 else 2

    return min(failures.items(), key=lambda kv: (cause(exit_code(kv[1])), getattr(kv[1], "timestamp", 0), kv[0]))


def failure_line(failures: dict) -> str:
    """One line from the agent's ProcessFailure records: the first rank that failed, and how."""
    if not failures:
        return "a rank failed (the agent recorded no failure)"
    rank, f = first_failure(failures)
    code = exit_code(f)
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code} (its error is above)"
    others = f"; {len(failures) - 1} other rank(s) stopped with it" if len(failures) > 1 else \
        "; the other ranks were stopped"
    return f"rank {rank} (pid {getattr(f, 'pid', '?')}) {how}{others}"


def launch_train(nproc: int, argv: list[str]) -> int:
    """Run `gstore <argv>` (--nproc already taken out) as `nproc` ranks under the elastic agent.
    Returns the job's exit status: 0, or the status of a rank that exited with an error (which
    it printed); a rank killed by a signal is an OptionError naming it."""
    if nproc < 1:
        raise OptionError(f"--nproc must be >= 1, got {nproc}")
    if "WORLD_SIZE" in os.environ:
        raise OptionError("--nproc inside a torchrun job: the job already has its ranks",
                          hint="drop --nproc (torchrun --nproc-per-node sets the ranks)")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.environ.update(worker_env(nproc))       # the agent passes its environment on
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=MONITOR_INTERVAL_S, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    # the agent logs each failure as a multi-line report: gstore prints its own line instead
    verbose = any(a in ("-v", "--verbose") for a in argv)
    if not verbose:
        for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    log.info("launching %d ranks: %s -m gstore %s", nproc, sys.executable, " ".join(argv))
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "gstore", *argv)
    except ChildFailedError as exc:
        rank, f = first_failure(exc.failures)
        code = exit_code(f)
        if code > 0:
            # the rank exited with an error it printed (one line: rank 0 speaks for all on a
            # failed check): that line is the job's, and its status the job's
            log.info("rank %d exited with status %d", rank, code)
            return code
        raise OptionError(f"gstore train --nproc {nproc}: " + failure_line(exc.failures)) from None
    except SignalException:
        # Ctrl-C / SIGTERM to the launcher: the agent has stopped the ranks; the CLI says Aborted
        raise KeyboardInterrupt from None
    return 0
