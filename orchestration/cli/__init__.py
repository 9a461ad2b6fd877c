"""The ``rotor`` command line, the embedded world and the demo."""
