"""The data-quality part of a run's report: the expectations the compile checked
(ops/expectations.py), their status and what was observed, from the manifest's ``quality`` section
that the profile carries."""

from __future__ import annotations

import html

STATUS_ORDER = ("failed", "warned", "quarantined", "passed")


def quality_lines(quality: dict | None) -> list[str]:
    """One line for the terminal summary, and one per expectation that did not pass."""
    if not quality:
        return []
    c = quality["counts"]
    lines = [f"expectations: {quality['checked']} checked, {c['passed']} passed, {c['warned']} warned, "
             f"{c['quarantined']} quarantined ({quality['quarantined_rows']:,} rows), {c['failed']} failed"]
    lines += [f"  {r['status']}: {r['key']} {r['description']}: {r['detail']}"
              for r in _ordered(quality["expectations"]) if r["status"] != "passed"]
    return lines


def _ordered(results: list[dict]) -> list[dict]:
    return sorted(results, key=lambda r: STATUS_ORDER.index(r["status"]))


def quality_html(quality: dict | None) -> str:
    """The report's data-quality section (empty without expectations)."""
    if not quality:
        return ""
    e = html.escape
    rows = "".join(f"<tr class='q-{e(r['status'])}'><td>{e(r['key'])}</td><td>{e(r['description'])}</td>"
                   f"<td>{e(r['severity'])}</td><td><b>{e(r['status'])}</b></td><td>{e(r['detail'])}</td></tr>"
                   for r in _ordered(quality["expectations"]))
    head = "".join(f"<th>{h}</th>" for h in ("key", "expectation", "severity", "status", "observed"))
    summary = quality_lines(quality)[0]
    return (f"<h2>Data quality</h2><p>{e(summary)}</p>"
            f"<table class=quality><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
