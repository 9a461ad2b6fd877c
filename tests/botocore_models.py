"""botocore's service models, parsed once per test process.

botocore parses its JSON models (ECS's alone is about a megabyte) once per *session*: each
``Loader`` caches what it loaded in its own ``_cache``. Rotor makes one session per process, so
in production that is once. Tests make a new session for nearly every test (a fresh
``AwsClients``, moto's own clients), and parsing the same files again and again was about half
the time of the integration tests (``json.decoder.raw_decode`` on top of a profile).

Here every ``Loader`` with the same search paths shares one cache, exactly as all the clients of
one session share their loader: what a client reads from it is the model botocore would have
parsed anyway, never mutated once built. Nothing else about the sessions is shared (credentials,
events, config and the moto mock stay per session).
"""

from __future__ import annotations

from typing import Any

from botocore.loaders import Loader

_CACHES: dict[tuple[Any, ...], dict[Any, Any]] = {}


def share_botocore_models() -> None:
    """Patch ``botocore.loaders.Loader`` once for this process (idempotent)."""
    if getattr(Loader.__init__, "_rotor_shared", False):
        return
    original = Loader.__init__

    def __init__(self: Loader, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        key = (tuple(self.search_paths), type(self.file_loader), tuple(self.extras_types))
        self._cache = _CACHES.setdefault(key, {})  # type: ignore[attr-defined]

    __init__._rotor_shared = True  # type: ignore[attr-defined]
    Loader.__init__ = __init__  # type: ignore[method-assign]
