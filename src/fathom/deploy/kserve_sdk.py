"""Import the KServe SDK without letting it read our command line.

`kserve/model_server.py` builds an argparse parser and calls ``parser.parse_known_args()`` on ``sys.argv`` when
the package is imported. argparse prefix-matches long options, so `fathom deploy render --config FILE` is read as
kserve's ``--configure_logging FILE`` and the process exits with status 2 before our code runs. Every import of
``kserve`` in fathom goes through :func:`kserve_sdk`, which imports it once with an empty argument list.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

_lock = threading.Lock()


def kserve_sdk() -> ModuleType:
    """The `kserve` package, imported with ``sys.argv`` reduced to the program name (then restored)."""
    if "kserve" in sys.modules:
        return sys.modules["kserve"]
    with _lock:
        saved = sys.argv
        sys.argv = saved[:1] or ["fathom"]
        try:
            import kserve
        finally:
            sys.argv = saved
    return kserve
