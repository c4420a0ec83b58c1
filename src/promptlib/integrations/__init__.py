"""Bridges from promptlib's ledger and library to other tools.

Each module reads what promptlib already recorded (runs, releases, comparisons) and hands
it to one tool; none of them evaluates anything. A module imports its tool's SDK only
when it is called, so ``import promptlib.integrations`` costs nothing, and a missing SDK
is a ``MissingDependencyError`` naming the extra to install:

    mlflow   runs as MLflow experiment runs, releases in the MLflow Prompt Registry
             (``promptlib[mlflow]``)
"""

from __future__ import annotations

__all__: list[str] = []
