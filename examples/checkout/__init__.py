"""The checkout saga package: contracts, definition, five Python participants, invariants.

See README.md beside this file for the key layout and what refuses where.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).parent

__all__ = ["PACKAGE_DIR"]
