"""Evaluation: datasets, suites, metrics, the response cache, the runner and ``evaluate``.

Modules, lowest first: ``dataset`` (JSONL/CSV rows with stable ids), ``metrics`` (and the
fast ROUGE of ``_rouge``), ``suite`` (which prompts run on which rows, scored how),
``cache`` (the SQLite response cache), ``runner`` (jobs, run keys, concurrent execution,
run records) and ``run`` (``evaluate``: settings, library, suites and providers wired
together into an ``EvalReport``). Nothing is imported here, so that naming one module does
not load the others.
"""
