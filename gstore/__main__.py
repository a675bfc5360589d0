"""`python -m gstore ...` is the `gstore` command (torchrun launches it this way)."""
from gstore.cli import main

if __name__ == "__main__":
    main()
