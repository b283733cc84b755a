"""The data validation gate: Great Expectations suites, the strict and quarantine policies, and their reports.

``validate_tables`` runs three suites (items, interactions, interactions per user) in one ephemeral GX context
and decides row by row from GX's unexpected indices. The order matters for quarantine: an interaction whose
item was rejected is rejected too, and the per-user minimum is counted on the rows that are left, so the
accepted dataset is always consistent. Rows are never silently dropped: every input row ends up either
accepted or in a quarantine file with its reasons (``accepted + quarantined == read``).

Outputs, under ``report_dir``: ``summary.json``, GX data docs (``data_docs/index.html``) and, with the
quarantine policy, ``quarantine/interactions.csv`` and ``quarantine/items.csv``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from hllm.config import DataConfig
from hllm.data import expectations as ex
from hllm.data.schema import (
    LINE_COLUMN,
    SOURCE_COLUMN,
    DataError,
    Dataset,
    RawTables,
    canonical_interactions,
    canonical_items,
)

logger = logging.getLogger(__name__)

POLICIES = ("strict", "quarantine")
MAX_EXAMPLES = 5


@dataclass
class Check:
    """The outcome of one expectation."""

    suite: str
    expectation: str
    column: str
    description: str
    success: bool
    unexpected_count: int
    examples: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    """What the gate decided. ``dataset`` holds the accepted rows whenever ``passed`` is true."""

    policy: str
    passed: bool
    source: str
    format: str
    checks: list[Check]
    counts: dict[str, dict[str, int]]
    dataset: Dataset | None = None
    report_dir: str | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def failed_checks(self) -> list[Check]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> dict:
        """JSON-ready summary (no data frames)."""
        return {
            "policy": self.policy,
            "passed": self.passed,
            "source": self.source,
            "format": self.format,
            "suites": list(ex.SUITES),
            "counts": self.counts,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "fingerprint": self.dataset.fingerprint() if self.dataset is not None else None,
        }

    def describe_failure(self) -> str:
        """Multi-line message: each failing expectation, its column, count and example rows."""
        lines = [f"validation failed ({self.policy} policy) for {self.source}:"]
        lines += [f"  {reason}" for reason in self.reasons]
        for check in self.failed_checks:
            lines.append(
                f"  [{check.suite}] {check.expectation} on column '{check.column}': "
                f"{check.unexpected_count} row(s) break '{check.description}'"
            )
            lines += [f"      {example}" for example in check.examples]
        if self.report_dir:
            lines.append(f"  report: {Path(self.report_dir) / 'summary.json'}")
        return "\n".join(lines)


class ValidationFailed(DataError):
    """The gate rejected the data; ``report`` says why."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.describe_failure())


class _GXRunner:
    """One ephemeral GX context; runs a suite on a frame and returns GX's per-expectation results."""

    def __init__(self, docs_dir: Path | None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_pandas("hllm")
        self.site = None
        if docs_dir is not None:
            self.site = "hllm_data_docs"
            self.context.add_data_docs_site(
                site_name=self.site,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs_dir.resolve()),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )

    def run(self, suite_name: str, rules: list[ex.Rule], frame: pd.DataFrame) -> list[tuple[ex.Rule, dict, bool]]:
        gx = self._gx
        suite = gx.ExpectationSuite(name=suite_name, meta={"version": ex.SUITE_VERSION})
        keys = []
        for rule in rules:
            expectation = getattr(gx.expectations, rule.expectation)(
                column=rule.column,
                **dict(rule.kwargs),
                meta={"source_column": rule.source_column, "description": rule.description},
            )
            keys.append((expectation.expectation_type, rule.column))
            suite.add_expectation(expectation)
        suite = self.context.suites.add(suite)
        asset = self.source.add_dataframe_asset(suite_name)
        batch = asset.add_batch_definition_whole_dataframe("all")
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[self.site])] if self.site else []
        checkpoint = self.context.checkpoints.add(
            gx.Checkpoint(
                name=suite_name,
                validation_definitions=[definition],
                actions=actions,
                result_format={"result_format": "COMPLETE"},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame.reset_index(drop=True)})
        (validation,) = result.run_results.values()
        by_key = {(r.expectation_config.type, r.expectation_config.kwargs["column"]): r for r in validation.results}
        outcomes = []
        for rule, key in zip(rules, keys, strict=False):
            gx_result = by_key[key]
            if gx_result.exception_info and gx_result.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX could not evaluate {rule}: {gx_result.exception_info}")
            outcomes.append((rule, dict(gx_result.result), bool(gx_result.success)))
        return outcomes


def _example(raw: pd.DataFrame, position: int, columns: list[str]) -> str:
    row = raw.iloc[position]
    values = ", ".join(f"{c}={_short(row[c])!r}" for c in columns if c in raw.columns)
    return f"{Path(str(row[SOURCE_COLUMN])).name}:{row[LINE_COLUMN]}: {values}"


def _short(value: object, limit: int = 60) -> object:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)"


def _apply_suite(
    runner: _GXRunner,
    suite: str,
    rules: list[ex.Rule],
    frame: pd.DataFrame,
    raw: pd.DataFrame,
    reasons: dict[int, list[str]],
    checks: list[Check],
    example_columns: list[str],
) -> None:
    """Run one suite on ``frame`` (whose index labels are ``raw``'s) and record failures per row."""
    labels = frame.index.to_numpy()
    for rule, result, success in runner.run(suite, rules, frame):
        failing = [int(labels[i]) for i in result.get("unexpected_index_list") or []]
        for label in failing:
            reasons.setdefault(label, []).append(rule.description)
        examples = [_example(raw, raw.index.get_loc(label), example_columns) for label in failing[:MAX_EXAMPLES]]
        count = int(result.get("unexpected_count", len(failing)) or 0)
        checks.append(Check(suite, rule.expectation, rule.source_column, rule.description, success, count, examples))


def _quarantine(raw: pd.DataFrame, reasons: dict[int, list[str]], path: Path) -> int:
    labels = sorted(reasons)
    if not labels:
        return 0
    bad = raw.loc[labels].copy()
    bad.insert(0, "reasons", ["; ".join(reasons[label]) for label in labels])
    ordered = [SOURCE_COLUMN, LINE_COLUMN, "reasons"] + [c for c in raw.columns if not c.startswith("_")]
    path.parent.mkdir(parents=True, exist_ok=True)
    # surrogateescape writes undecodable input bytes back exactly as they were read: nothing is lost.
    bad[ordered].to_csv(path, index=False, encoding="utf-8", errors="surrogateescape")
    return len(bad)


def validate_tables(
    raw: RawTables,
    config: DataConfig | None = None,
    policy: str = "strict",
    report_dir: str | Path | None = None,
) -> ValidationReport:
    """Validate raw tables and return the gate's decision, with accepted rows when it passes.

    Args:
        raw: tables from a reader (all values text, with ``_source``/``_line``).
        config: thresholds; defaults to `DataConfig()`.
        policy: ``strict`` (any failure fails the gate) or ``quarantine`` (bad rows set aside with reasons).
        report_dir: where to write ``summary.json``, data docs and quarantine files; ``None`` writes nothing.

    Raises:
        DataError: unknown policy. The gate's own verdict is in the report; see `require_pass`.
    """
    if policy not in POLICIES:
        raise DataError(f"unknown policy '{policy}', expected one of {list(POLICIES)}")
    config = config or DataConfig()
    out = Path(report_dir) if report_dir is not None else None
    runner = _GXRunner(out / "data_docs" if out else None)
    items_raw, inter_raw = raw.items, raw.interactions
    item_reasons: dict[int, list[str]] = {}
    inter_reasons: dict[int, list[str]] = {}
    checks: list[Check] = []
    item_columns = ["item_id", "title", "tag", "description"]
    inter_columns = ["user_id", "item_id", "timestamp"]

    items = ex.prepare_items(items_raw, config)
    _apply_suite(runner, ex.ITEMS_SUITE, ex.items_rules(config), items, items_raw, item_reasons, checks, item_columns)
    accepted_item_ids = set(items.loc[~items.index.isin(list(item_reasons)), "item_id"].dropna())

    inter = ex.prepare_interactions(inter_raw, accepted_item_ids, config)
    rules = ex.interactions_rules(config)
    _apply_suite(runner, ex.INTERACTIONS_SUITE, rules, inter, inter_raw, inter_reasons, checks, inter_columns)

    row_ok = inter.loc[~inter.index.isin(list(inter_reasons))]
    users = ex.prepare_users(row_ok)
    _apply_suite(runner, ex.USERS_SUITE, ex.users_rules(config), users, inter_raw, inter_reasons, checks, inter_columns)

    counts = {
        "items": {"read": len(items_raw), "rejected": len(item_reasons)},
        "interactions": {"read": len(inter_raw), "rejected": len(inter_reasons)},
    }
    for table in counts.values():
        table["accepted"] = table["read"] - table["rejected"]
    report = ValidationReport(
        policy, True, raw.source, raw.format, checks, counts, report_dir=str(out) if out else None
    )
    if policy == "strict":
        report.passed = not report.failed_checks
    else:
        for name, table in counts.items():
            fraction = table["rejected"] / max(table["read"], 1)
            if table["accepted"] == 0:
                report.reasons.append(f"no {name} row was accepted")
            elif fraction > config.max_quarantine_fraction:
                report.reasons.append(
                    f"{table['rejected']} of {table['read']} {name} rows ({fraction:.0%}) were rejected, more than "
                    f"max_quarantine_fraction={config.max_quarantine_fraction}: the source looks broken"
                )
        report.passed = not report.reasons
    if report.passed:
        accepted_inter = inter.loc[~inter.index.isin(list(inter_reasons))]
        accepted_items = items_raw.loc[~items_raw.index.isin(list(item_reasons))].copy()
        accepted_items["item_id"] = items.loc[accepted_items.index, "item_id"]
        report.dataset = Dataset(
            canonical_interactions(accepted_inter),
            canonical_items(accepted_items),
            {"source": raw.source, "format": raw.format, "policy": policy, "validation": counts},
        )
    if out is not None:
        _write_reports(report, out, items_raw, item_reasons, inter_raw, inter_reasons)
    logger.info("validation %s: %s", "passed" if report.passed else "FAILED", json.dumps(counts))
    return report


def _write_reports(
    report: ValidationReport,
    out: Path,
    items_raw: pd.DataFrame,
    item_reasons: dict[int, list[str]],
    inter_raw: pd.DataFrame,
    inter_reasons: dict[int, list[str]],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    if report.policy == "quarantine":
        summary["quarantine"] = {
            "items": str(out / "quarantine" / "items.csv") if item_reasons else None,
            "interactions": str(out / "quarantine" / "interactions.csv") if inter_reasons else None,
        }
        _quarantine(items_raw, item_reasons, out / "quarantine" / "items.csv")
        _quarantine(inter_raw, inter_reasons, out / "quarantine" / "interactions.csv")
    summary["data_docs"] = str(out / "data_docs" / "index.html")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=True) + "\n")


def require_pass(report: ValidationReport) -> Dataset:
    """Return the accepted dataset, or raise `ValidationFailed` with the report's explanation."""
    if not report.passed or report.dataset is None:
        raise ValidationFailed(report)
    return report.dataset
