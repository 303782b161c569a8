"""`python -m cxrtool ...`, which `torchrun -m cxrtool pretrain ...` uses for multi-process training."""

from .cli import main

if __name__ == "__main__":
    main()
