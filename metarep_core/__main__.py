"""``python -m metarep_core ...`` (see :mod:`metarep_core.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
