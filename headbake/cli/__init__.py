"""The ``headbake`` command line: thin Click faces over the library.

Command modules import only click at module level; each command imports what
it needs when it runs, so ``headbake --help`` (and ``bake``/``push``) never
load torch.
"""

from headbake.cli.main import main

__all__ = ["main"]
