"""MLflow: each recorded run as an MLflow run, each release in the MLflow Prompt Registry.

Nothing here evaluates a prompt: everything comes from the ledger (and, for inputs and
references, from the project's datasets). MLflow is imported only when a function here
talks to it; without it, ``MissingDependencyError`` names the extra (``promptlib[mlflow]``).

**Runs.** A run record becomes one MLflow run in the configured experiment (default
``promptlib``), named ``<prompt> <version> / <suite>`` and timed as the record was:

* params: ``prompt_id``, ``prompt_version``, ``prompt_fingerprint``, ``suite``,
  ``dataset``, ``dataset_sha256``, ``dataset_rows``, ``provider``, ``provider_type``,
  ``provider_fingerprint``, ``model``, ``repeats``, ``examples`` (and ``run_params``, the
  run's generation parameters as JSON, when it has some);
* metrics: ``<metric>/mean``, ``<metric>/stderr`` and ``<metric>/n`` per metric; ``errors``,
  ``seconds``, ``calls``, ``cached``; ``prompt_tokens``, ``completion_tokens`` and ``cost``
  when the provider reported them;
* tags: ``promptlib.run_key`` (the run's identity in MLflow), ``promptlib.record`` (the
  record's hash), ``mlflow.source.git.commit``, and with a comparison the verdicts of
  ``comparison_tags``;
* artifacts under ``promptlib/``: ``examples.json`` and ``examples.csv`` (id, inputs,
  outputs, references, scores and error of every example), ``record.json`` (the ledger
  record) and ``report.html`` (the page of ``promptlib report --run KEY``).

Exporting is idempotent. The MLflow run tagged with a run key is that run's only MLflow
run: it is left alone when it holds the same record, and updated (metrics, tags,
artifacts) when the key was recorded again (``eval --fresh``). ``promptlib.record`` is
written last, so an export that was interrupted is completed by the next one.

**Prompts.** Each prompt of a release is a registry prompt named by its id. Its template
is the prompt's messages (a chat prompt: a list of ``{role, content}``) or its template (a
text prompt), stored as written: promptlib templates are Jinja, MLflow fills ``{{ name }}``
itself and renders a template holding ``{% ... %}`` with Jinja. Partials cannot be resolved
by MLflow; a prompt that includes some keeps them in the tag ``promptlib.partials``. A
prompt version is tagged with its fingerprint (``promptlib.fingerprint``), its semver
(``promptlib.version``) and the release that registered it (``promptlib.release``). A
prompt whose fingerprint is registered already is not registered again, only aliased:
every release sets the alias ``v2-1-0`` (for 2.1.0) on each of its prompts and, when it is
the latest release in the ledger, the moving alias of ``[tool.promptlib.mlflow] alias``.

Errors of MLflow (an unreachable server, a refused request) become a ``ConfigError``
naming the tracking URI.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._canonical import canonical_json
from ..compare.against import AgainstReport, compare_against, estimate_against
from ..errors import ConfigError, MissingDependencyError, NotFoundError, PromptlibError
from ..evals.cache import CacheMode
from ..evals.evidence import RunEvidence, examples_of
from ..evals.run import estimate
from ..evals.runner import EvalOptions
from ..evals.suite import Suite, load_suites
from ..ledger import AnyLedger, LedgerView, ReleaseRecord, RunRecord
from ..reports._text import interval_text
from ..reports.html import project_facts, run_html
from ..settings import MlflowSettings, Settings
from ..versioning.history import releases, snapshot_of
from ..versioning.snapshot import PromptState
from ..versions import VersionError, parse_version

__all__ = [
    "Export",
    "ExportedRun",
    "PromptPayload",
    "RegisteredPrompt",
    "RunPayload",
    "alias_of",
    "comparison_tags",
    "export_eval",
    "export_release",
    "export_runs",
    "find_run",
    "prompt_payload",
    "require",
    "run_payload",
]

RUN_KEY_TAG = "promptlib.run_key"
RECORD_TAG = "promptlib.record"
FINGERPRINT_TAG = "promptlib.fingerprint"
VERSION_TAG = "promptlib.version"
RELEASE_TAG = "promptlib.release"
PARTIALS_TAG = "promptlib.partials"
ARTIFACT_DIR = "promptlib"
EXTRA = "pip install 'promptlib[mlflow]'"

# MLflow refuses a param value longer than this.
_PARAM_LIMIT = 6000
# promptlib's model parameters as MLflow's PromptModelConfig names them; the others go
# into its extra_params.
_MODEL_CONFIG = {
    "temperature": "temperature",
    "top_p": "top_p",
    "max_tokens": "max_tokens",
    "stop": "stop_sequences",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


# -- what is sent -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPayload:
    """Everything one run record becomes in MLflow (see the module docstring)."""

    key: str
    record: str
    name: str
    start: int  # milliseconds since the epoch
    end: int
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: dict[str, str]  # path under promptlib/ -> text


def _millis(time: str) -> int:
    moment = datetime.fromisoformat(time.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _examples(evidence: RunEvidence) -> list[dict[str, Any]]:
    return [
        {
            "id": e.id,
            "inputs": dict(e.inputs) if e.inputs is not None else None,
            "outputs": list(e.outputs) if e.outputs is not None else None,
            "references": list(e.references) if e.references is not None else None,
            "scores": dict(e.scores),
            "error": e.error,
        }
        for e in evidence.examples
    ]


def _examples_csv(evidence: RunEvidence, rows: list[dict[str, Any]]) -> str:
    """One line per example: a column per score; inputs, outputs, references as JSON."""
    metrics = list(evidence.run.results) or sorted({m for r in rows for m in r["scores"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", *metrics, "error", "inputs", "outputs", "references"])

    def cell(value: Any) -> str:
        return "" if value is None else json.dumps(value, ensure_ascii=False)

    for row in rows:
        scores = ["" if row["scores"].get(m) is None else repr(row["scores"][m]) for m in metrics]
        writer.writerow(
            [
                row["id"],
                *scores,
                row["error"] or "",
                cell(row["inputs"]),
                cell(row["outputs"]),
                cell(row["references"]),
            ]
        )
    return buffer.getvalue()


def run_payload(evidence: RunEvidence, *, project: Mapping[str, Any] | None = None) -> RunPayload:
    """What the run of ``evidence`` becomes in MLflow: params, metrics, tags, artifacts."""
    run = evidence.run
    assert run.hash is not None, "a run read from the ledger has its hash"
    params = {
        "prompt_id": run.prompt.id,
        "prompt_version": run.prompt.version,
        "prompt_fingerprint": run.prompt.fingerprint,
        "suite": run.suite,
        "dataset": run.dataset.path,
        "dataset_sha256": run.dataset.sha256,
        "dataset_rows": str(run.dataset.rows),
        "provider": run.provider.name,
        "provider_type": run.provider.type,
        "provider_fingerprint": run.provider.fingerprint,
        "model": run.provider.model or "",
        "repeats": str(run.repeats),
        "examples": str(run.examples),
    }
    if run.params:
        text = canonical_json(run.params)
        if len(text) <= _PARAM_LIMIT:  # else it is only in record.json
            params["run_params"] = text
    metrics: dict[str, float] = {}
    for name, result in run.results.items():
        metrics[f"{name}/mean"] = result.mean
        metrics[f"{name}/stderr"] = result.stderr
        metrics[f"{name}/n"] = float(result.n)
    metrics["errors"] = float(run.errors)
    metrics["seconds"] = run.timing.seconds
    metrics["calls"] = float(run.timing.calls)
    metrics["cached"] = float(run.timing.cached)
    for usage in ("prompt_tokens", "completion_tokens", "cost"):
        value = getattr(run.usage, usage)
        if value is not None:
            metrics[usage] = float(value)
    tags = {
        RUN_KEY_TAG: run.key,
        "promptlib.prompt": run.prompt.id,
        "promptlib.suite": run.suite,
        "promptlib.recorded_by": run.provenance.promptlib,
    }
    if run.provenance.git_commit:
        tags["mlflow.source.git.commit"] = run.provenance.git_commit
    rows = _examples(evidence)
    document = {"run": run.key, "notes": evidence.notes, "examples": rows}
    start = _millis(run.time)
    return RunPayload(
        key=run.key,
        record=run.hash,
        name=f"{run.prompt.id} {run.prompt.version} / {run.suite}",
        start=start,
        end=start + int(run.timing.seconds * 1000),
        params=params,
        metrics=metrics,
        tags=tags,
        artifacts={
            "examples.json": json.dumps(document, indent=2, ensure_ascii=False) + "\n",
            "examples.csv": _examples_csv(evidence, rows),
            "record.json": json.dumps(
                {**run.to_json(), "hash": run.hash}, indent=2, ensure_ascii=False
            )
            + "\n",
            "report.html": run_html(evidence, project=project),
        },
    )


def comparison_tags(report: AgainstReport) -> dict[str, dict[str, str]]:
    """The tags of each candidate run of a comparison, by run key: what it was compared
    with (``promptlib.against``: the baseline's label; ``.ref``: as given), and per metric
    ``promptlib.against.<metric>.`` verdict, diff, ci, p (Holm-adjusted when gated), n,
    gated and baseline_run (the baseline's run key)."""
    out: dict[str, dict[str, str]] = {}
    for c in report.comparisons:
        if c.candidate_run is None:
            continue
        tags = out.setdefault(
            c.candidate_run,
            {"promptlib.against": report.base_label, "promptlib.against.ref": report.ref},
        )
        prefix = f"promptlib.against.{c.metric}"
        p_value = c.p_adjusted if c.p_adjusted is not None else c.p_value
        tags[f"{prefix}.verdict"] = c.verdict
        tags[f"{prefix}.diff"] = f"{c.diff:+.4f}"
        tags[f"{prefix}.ci"] = interval_text(c.ci)
        tags[f"{prefix}.p"] = f"{p_value:.4g}"
        tags[f"{prefix}.n"] = str(c.n)
        tags[f"{prefix}.gated"] = "true" if c.primary else "false"
        if c.baseline_run is not None:
            tags[f"{prefix}.baseline_run"] = c.baseline_run
    return out


@dataclass(frozen=True)
class PromptPayload:
    """What one released prompt becomes in the MLflow Prompt Registry."""

    name: str
    template: str | list[dict[str, str]]
    commit_message: str
    tags: dict[str, str]
    model_config: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


def alias_of(version: str) -> str:
    """The registry alias of a release: ``v2-1-0`` for 2.1.0 (MLflow allows [A-Za-z0-9_-])."""
    return "v" + re.sub(r"[^A-Za-z0-9_-]", "-", str(parse_version(version)))


def prompt_payload(state: PromptState, release: str) -> PromptPayload:
    """The registry prompt of ``state`` as released in ``release`` (template kept as is)."""
    behaviour = state.behaviour
    template: str | list[dict[str, str]]
    if behaviour.get("messages") is not None:
        template = [{"role": m["role"], "content": m["content"]} for m in behaviour["messages"]]
    else:
        template = str(behaviour["template"])
    tags = {
        FINGERPRINT_TAG: state.fingerprint,
        VERSION_TAG: state.version,
        RELEASE_TAG: release,
        "promptlib.inputs": canonical_json(behaviour.get("inputs", {})),
        "promptlib.output": canonical_json(behaviour.get("output", {})),
    }
    if behaviour.get("model"):
        tags["promptlib.model"] = canonical_json(behaviour["model"])
    partials = behaviour.get("partials") or {}
    if partials:
        tags[PARTIALS_TAG] = canonical_json(partials)
    model: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in (behaviour.get("model") or {}).items():
        if key in _MODEL_CONFIG:
            model[_MODEL_CONFIG[key]] = value
        else:
            extra[key] = value
    if extra:
        model["extra_params"] = extra
    output = behaviour.get("output") or {}
    schema = output.get("schema") if output.get("format") == "json" else None
    return PromptPayload(
        name=state.id,
        template=template,
        commit_message=f"promptlib release {release}: {state.id} {state.version}",
        tags=tags,
        model_config=model or None,
        response_format=dict(schema) if schema else None,
    )


# -- talking to MLflow --------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedRun:
    """A run sent to MLflow: ``created``, ``updated`` (recorded again) or ``unchanged``."""

    key: str
    name: str
    run_id: str
    status: str


@dataclass(frozen=True)
class RegisteredPrompt:
    """A released prompt in the registry: ``registered`` now, or ``existing`` (same
    fingerprint registered before), with the aliases this release set on it."""

    name: str
    version: int
    status: str
    aliases: tuple[str, ...]


@dataclass
class Export:
    """What an export did, and where: the runs logged and the prompts registered."""

    tracking_uri: str
    experiment: str
    experiment_id: str | None = None
    runs: list[ExportedRun] = field(default_factory=list)
    prompts: list[RegisteredPrompt] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def require(settings: MlflowSettings) -> str:
    """The tracking URI, once MLflow is known to be importable and a URI is configured.

    Commands call this before they do any work, so that a missing extra or URI is an
    error (exit 2) before a model is called.
    """
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"--mlflow and `promptlib export mlflow` need MLflow: {EXTRA}"
        ) from exc
    if not settings.tracking_uri:
        raise ConfigError(
            "no MLflow tracking URI: set tracking-uri in [tool.promptlib.mlflow] (e.g. "
            "'http://127.0.0.1:5000') or the MLFLOW_TRACKING_URI environment variable"
        )
    return settings.tracking_uri


class _Tracker:
    """One MLflow tracking server and registry, with MLflow's errors translated."""

    def __init__(self, settings: MlflowSettings) -> None:
        self.uri = require(settings)
        self.settings = settings
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self._experiment_id: str | None = None

    @contextmanager
    def calling(self, what: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            message = str(exc.message).strip().splitlines()[0][:500]
            raise ConfigError(
                f"MLflow at {self.uri}: {what} failed: {message}. Check that the server is up "
                "and tracking-uri in [tool.promptlib.mlflow] (or MLFLOW_TRACKING_URI)"
            ) from exc

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            name = self.settings.experiment
            with self.calling(f"reading experiment {name!r}"):
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    self._experiment_id = str(self.client.create_experiment(name))
                elif experiment.lifecycle_stage != "active":
                    raise ConfigError(
                        f"MLflow at {self.uri}: experiment {name!r} is deleted; restore it "
                        "(`mlflow experiments restore`) or set another experiment in "
                        "[tool.promptlib.mlflow]"
                    )
                else:
                    self._experiment_id = str(experiment.experiment_id)
        assert self._experiment_id is not None
        return self._experiment_id

    def log_run(self, payload: RunPayload, extra_tags: Mapping[str, str]) -> ExportedRun:
        from mlflow.entities import Metric, Param, RunTag

        experiment = self.experiment_id()
        with self.calling(f"logging run {payload.name}"):
            found = self.client.search_runs(
                [experiment],
                filter_string=f"tags.`{RUN_KEY_TAG}` = '{payload.key}'",
                max_results=1,
            )
            if found:
                run = found[0]
                run_id = str(run.info.run_id)
                if run.data.tags.get(RECORD_TAG) == payload.record:
                    if extra_tags:
                        tags = [RunTag(k, v) for k, v in extra_tags.items()]
                        self.client.log_batch(run_id, tags=tags)
                    return ExportedRun(payload.key, payload.name, run_id, "unchanged")
                status = "updated"
                # A param cannot change in MLflow; a run key's params never do.
                params = {k: v for k, v in payload.params.items() if k not in run.data.params}
            else:
                created = self.client.create_run(
                    experiment,
                    start_time=payload.start,
                    tags={RUN_KEY_TAG: payload.key},
                    run_name=payload.name,
                )
                run_id = str(created.info.run_id)
                status = "created"
                params = payload.params
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, v, payload.start, 0) for k, v in payload.metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
                tags=[RunTag(k, v) for k, v in {**payload.tags, **extra_tags}.items()],
            )
            for path, text in payload.artifacts.items():
                self.client.log_text(run_id, text, f"{ARTIFACT_DIR}/{path}")
            # set_terminated prints the run's URL on stdout, where reports go.
            with redirect_stdout(io.StringIO()):
                self.client.set_terminated(run_id, "FINISHED", end_time=payload.end)
            self.client.set_tag(run_id, RECORD_TAG, payload.record)
        return ExportedRun(payload.key, payload.name, run_id, status)

    def prompt_versions(self, name: str) -> list[Any]:
        from mlflow.exceptions import MlflowException

        versions: list[Any] = []
        token = None
        with self.calling(f"reading prompt {name}"):
            while True:
                try:
                    page = self.client.search_prompt_versions(name, page_token=token)
                except MlflowException as exc:
                    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                        return []
                    raise
                versions.extend(page)
                token = page.token
                if not token:
                    return versions

    def register(self, payload: PromptPayload, aliases: Sequence[str]) -> RegisteredPrompt:
        existing = next(
            (
                v
                for v in self.prompt_versions(payload.name)
                if v.tags.get(FINGERPRINT_TAG) == payload.tags[FINGERPRINT_TAG]
            ),
            None,
        )
        with self.calling(f"registering prompt {payload.name}"):
            if existing is None:
                options: dict[str, Any] = {}
                # model_config came after chat prompts (MLflow 3.2); the parameters are in
                # the tag promptlib.model either way.
                accepted = inspect.signature(self.client.register_prompt).parameters
                if payload.model_config and "model_config" in accepted:
                    options["model_config"] = payload.model_config
                created = self.client.register_prompt(
                    payload.name,
                    payload.template,
                    commit_message=payload.commit_message,
                    tags=payload.tags,
                    response_format=payload.response_format,
                    **options,
                )
                version, status = int(created.version), "registered"
            else:
                version, status = int(existing.version), "existing"
            for alias in aliases:
                self.client.set_prompt_alias(payload.name, alias, version)
        return RegisteredPrompt(payload.name, version, status, tuple(aliases))


# -- what to export -----------------------------------------------------------------------


def find_run(view: LedgerView, key: str) -> RunRecord:
    """The run whose key is ``key`` or starts with it; ``NotFoundError`` otherwise."""
    prefix = key.removeprefix("sha256:")
    matches = view.select(lambda entry: entry.key.removeprefix("sha256:").startswith(prefix))
    if len(matches) != 1:
        what = "no run" if not matches else f"{len(matches)} runs"
        raise NotFoundError(
            f"{what} in the ledger match {key!r}; give more of the key (`promptlib ledger "
            "show --format json` lists the runs)"
        )
    return matches[0]


def _suites(root: Path, notes: list[str]) -> dict[str, Suite]:
    try:
        return {s.name: s for s in load_suites(root)}
    except PromptlibError as exc:
        notes.append(f"the suites cannot be read ({exc}): inputs and references are not sent")
        return {}


def _log(
    tracker: _Tracker,
    result: Export,
    view: LedgerView,
    runs: Sequence[RunRecord],
    root: Path,
    tags: Mapping[str, Mapping[str, str]],
) -> None:
    suites = _suites(root, result.notes)
    project = project_facts(root)
    seen: set[str] = set()
    for run in runs:
        if run.key in seen:
            continue
        seen.add(run.key)
        evidence = examples_of(view, run, suites, root)
        payload = run_payload(evidence, project=project)
        result.runs.append(tracker.log_run(payload, tags.get(run.key, {})))
    result.experiment_id = tracker.experiment_id() if runs else None


def export_runs(
    settings: Settings,
    view: LedgerView,
    runs: Sequence[RunRecord],
    *,
    tags: Mapping[str, Mapping[str, str]] | None = None,
) -> Export:
    """Log ``runs`` to MLflow (``tags`` adds tags by run key), idempotently."""
    tracker = _Tracker(settings.mlflow)
    result = Export(tracker.uri, settings.mlflow.experiment)
    _log(tracker, result, view, runs, settings.require_root(), tags or {})
    return result


def _release(view: LedgerView, version: str) -> tuple[ReleaseRecord, bool]:
    """The release record of ``version`` (or ``latest``) and whether it is the latest."""
    records = releases(view)
    if not records:
        raise NotFoundError("the ledger has no release yet; `promptlib release` records one")
    if version == "latest":
        return records[-1], True
    try:
        wanted = parse_version(version)
    except VersionError as exc:
        raise NotFoundError(f"{version!r} is not a release version: {exc}") from None
    for index, record in enumerate(records):
        if parse_version(record.version) == wanted:
            return record, index == len(records) - 1
    known = ", ".join(f"v{r.version}" for r in records)
    raise NotFoundError(f"no release {version} in the ledger; releases: {known}")


def export_release(settings: Settings, view: LedgerView, version: str) -> Export:
    """Register the prompts of release ``version`` (or ``latest``) in the Prompt Registry,
    alias them, and log the runs of the released prompts (see the module docstring)."""
    record, latest = _release(view, version)
    tracker = _Tracker(settings.mlflow)
    result = Export(tracker.uri, settings.mlflow.experiment)
    aliases = [alias_of(record.version)]
    if latest and settings.mlflow.alias:
        aliases.append(settings.mlflow.alias)
    elif settings.mlflow.alias:
        result.notes.append(
            f"v{record.version} is not the latest release: alias {settings.mlflow.alias!r} "
            "was left where it is"
        )
    snapshot = snapshot_of(record, view)
    for prompt_id in sorted(snapshot.prompts):
        payload = prompt_payload(snapshot.prompts[prompt_id], record.version)
        result.prompts.append(tracker.register(payload, aliases))
    released = {pid: item.fingerprint for pid, item in record.prompts.items()}
    runs = view.select(lambda e: released.get(e.prompt_id) == e.prompt_fingerprint)
    _log(tracker, result, view, runs, settings.require_root(), {})
    return result


def export_eval(
    settings: Settings,
    ledger: AnyLedger,
    *,
    suites: Sequence[str] = (),
    prompts: Sequence[str] = (),
    provider: str | None = None,
    repeats: int = 1,
    against: str | None = None,
    gates_all: bool = False,
) -> Export:
    """Log the runs an ``eval`` with these arguments used, once it recorded them.

    The jobs are planned again, as ``eval --dry-run`` plans them, and each job's run is
    read from the ledger by its key (a job that failed has none and is left out). With
    ``against``, the baseline runs are logged too, and when every job of the comparison
    is in the ledger it is computed again from the ledger alone (no model is called, as
    in ``promptlib report --against``) to tag each candidate run with its verdicts.
    """
    options = EvalOptions(repeats=repeats, retry_errors=False)
    common: dict[str, Any] = {
        "suites": suites,
        "prompts": prompts,
        "provider": provider,
        "cache_mode": CacheMode.off,
        "options": options,
        "ledger": ledger,
    }
    tags: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    if against is None:
        groups = estimate(settings, **common).groups
    else:
        plan = estimate_against(settings, against, gates_all=gates_all, **common)
        groups = plan.estimate.groups
        missing = sum(1 for _, results in groups for r in results if r.status != "reused")
        if missing:
            notes.append(
                f"{missing} job(s) of the comparison are not in the ledger (failed?): the "
                "runs were logged without verdict tags"
            )
        else:
            report = compare_against(settings, against, gates_all=gates_all, **common)
            tags = comparison_tags(report)
    view = ledger.read()
    runs = []
    for _, results in groups:
        for job_result in results:
            run = job_result.record or view.run(job_result.job.key)
            if run is not None:
                runs.append(run)
    result = export_runs(settings, view, runs, tags=tags)
    result.notes[:0] = notes
    return result
