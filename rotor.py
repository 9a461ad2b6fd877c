"""The ``rotor`` command's entry point (also ``python -m rotor``).

It stays this small on purpose: everything rotor is (boto3, pydantic, the templates) is
imported from here, inside a ``try``, so that Ctrl-C while it loads ends quietly with the
shell's 130 rather than a traceback through the imports. ``orchestration.cli.main`` handles
Ctrl-C from then on.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    try:
        from orchestration.cli.main import main as run
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return run()


if __name__ == "__main__":
    sys.exit(main())
