"""`python -m melasma ...`: the command-line entry point."""

import sys

from melasma.cli import main

if __name__ == "__main__":
    sys.exit(main())
