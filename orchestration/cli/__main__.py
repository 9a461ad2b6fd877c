"""``python -m orchestration.cli``: the same as the ``rotor`` command."""

from orchestration.cli.main import main

raise SystemExit(main())
