"""The ``promptlib`` command line: the thinnest outer layer; nothing imports it.

Each command parses its options, calls one library function, renders the result and maps
errors to exit codes:

    0  passed
    1  a gate failed: invalid prompt files, a regression, a threshold, an insufficient
       version bump, manifest drift
    2  usage or input error (bad options, unknown ids, unreadable files)
    3  the provider failed beyond the error budget

Errors are printed without a traceback; set ``PROMPTLIB_DEBUG=1`` to see one.
"""

from __future__ import annotations

from . import _core, _eval, _export, _import, _judge, _new, _report, _versioning  # noqa: F401  (register their commands)
from ._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app(prog_name="promptlib")
