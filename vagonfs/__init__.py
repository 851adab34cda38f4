"""vagonfs: mount Vagon Files, a tenant file store and Shannon workspaces with FUSE."""

import sys

__version__ = "0.1.0"


def command(*args: str) -> list[str]:
    """The argv that runs this vagonfs in a child process.

    ``-P`` keeps the child's current folder off its import path: a folder
    that holds a clone named ``vagonfs`` would otherwise stand in for the
    installed package.
    """
    return [sys.executable, "-P", "-m", "vagonfs", *args]
