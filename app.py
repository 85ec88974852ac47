"""Melasma Severity Studio: `python app.py [--host H] [--port P] [--data-dir D] [--raters a,b,c] [--auth u:p]`.

Importing this module has no side effects (no launch, no data, no model); Hugging Face Spaces runs it
as a script. The flags override MELASMA_DATA_DIR, MELASMA_RATERS and MELASMA_AUTH; Gradio's own
GRADIO_SERVER_NAME / GRADIO_SERVER_PORT keep working when --host / --port are not given.
"""

from __future__ import annotations

import argparse
import os
import sys

if os.environ.get("SPACES_ZERO_GPU"):
    import spaces  # noqa: F401  ZeroGPU must patch torch before anything imports it

from melasma.cli import serve
from melasma.errors import UserError


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and serve the app until interrupted."""
    parser = argparse.ArgumentParser(prog="app.py", description=serve.HELP)
    serve.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve.run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
