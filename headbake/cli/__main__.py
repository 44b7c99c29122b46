"""``python -m headbake.cli`` (the same as the ``headbake`` command)."""

from headbake.cli.main import main

main()
