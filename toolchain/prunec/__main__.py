"""`python -m prunec ...`: the same command line as the `prunec` script.

Also what launchers that run a module rather than an executable need, e.g.
`torchrun --nproc_per_node=N -m prunec prune ...` (torchrun without -m or --no-python runs its argument as a
Python file, so `torchrun ... prunec prune` looks for a file named `prunec` in the working directory).
"""
from prunec.cli import main

if __name__ == "__main__":
    main(prog_name="prunec")
