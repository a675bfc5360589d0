"""A torchrun worker script for tests/test_distributed.py: `gstore ARGS...`, except that rank 1 adds
the arguments of env DDP_TEST_RANK1_EXTRA (a mismatched config, as a misconfigured node would)."""
import os
import sys

from gstore.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if os.environ.get("RANK") == "1":
        args += os.environ.get("DDP_TEST_RANK1_EXTRA", "").split()
    main(args)
