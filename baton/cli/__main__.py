"""``python -m baton.cli`` is the ``baton`` command too."""

from baton.cli import main

main()
