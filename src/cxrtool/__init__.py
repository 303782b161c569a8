"""cxrtool: transfer learning on chest X-rays from the shell.

The package is a library of datasets, backbones and trainers with a thin Typer command line
(`cxrtool.cli`) on top. Every stage reads a directory (a prepared data cache or a run directory)
and writes another, so stages can be scripted and resumed.
"""

__version__ = "0.1.0"
