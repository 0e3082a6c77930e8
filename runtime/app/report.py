"""``vlart report DIR``: a sweep's results as ``report.md`` and a self-contained ``report.html``.

Per cell and task: success (SIMPLER's final-step rule), success at any step and grasped, each with its 95% Wilson
interval; a bar chart of success by cell with those intervals; the distribution of the policy's per-step latency
(each episode's p50 and p95); the failed episodes with their reasons and links to their videos; and where the run
came from (git commit, versions, machine, Ray cluster, the sweep's YAML). The Markdown shows the charts from PNG
files beside it; the HTML carries them inline, so it can be mailed or attached as one file.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Optional

from runtime.core.stats import percentile

RATES = ("success_final", "success_any", "grasped")
RATE_TITLES = {"success_final": "success (final)", "success_any": "success (any step)", "grasped": "grasped"}


def load_results(directory: Path) -> dict[str, Any]:
    path = directory / "results.json"
    try:
        result = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"DIR: no sweep results at {path} ({exc.strerror}); run vlart sweep first") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"DIR: {path} is not JSON ({exc})") from None
    if "cells" not in result or "episodes" not in result:
        raise ValueError(f"DIR: {path} is not a sweep's results (no cells / episodes); vlart eval's results.json "
                         "prints its own table")
    return result


def _rate(rate: Optional[dict[str, Any]]) -> str:
    if rate is None:
        return "-"
    return f"{100 * rate['rate']:.1f}% [{100 * rate['ci95'][0]:.1f}, {100 * rate['ci95'][1]:.1f}]"


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (cell, task): the rates and latency summary the tables and charts show."""
    table = []
    for cell, entry in result["cells"].items():
        for task, aggregate in entry["tasks"].items():
            episodes = [e for e in result["episodes"] if e["cell"] == cell and e["task"] == task]
            p50s = [e["policy_latency_ms"]["p50"] for e in episodes if e.get("policy_latency_ms")]
            table.append({"cell": cell, "task": task, "episodes": aggregate["episodes"],
                          "failed_runs": aggregate["failed_runs"], **{r: aggregate.get(r) for r in RATES},
                          "latency_p50_ms": round(percentile(p50s, 50), 3) if p50s else None})
    return table


def plot_success(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{row['cell']}\n{row['task'].rsplit('/', 1)[-1]}" for row in table]
    rates = [100 * row["success_final"]["rate"] for row in table]
    low = [rate - 100 * row["success_final"]["ci95"][0] for rate, row in zip(rates, table)]
    high = [100 * row["success_final"]["ci95"][1] - rate for rate, row in zip(rates, table)]
    figure, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(table) + 2), 4.2))
    axis.bar(range(len(table)), rates, yerr=[low, high], capsize=4, color="#4c78a8")
    for index, row in enumerate(table):
        axis.annotate(f"{row['success_final']['successes']}/{row['episodes']}", (index, rates[index]),
                      textcoords="offset points", xytext=(8, 3), fontsize=8)
    axis.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=8)
    axis.set(ylabel="success (final step), %", ylim=(0, 100),
             title="Success by cell, with 95% Wilson intervals")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_latency(result: dict[str, Any], path: Path) -> bool:
    """Box plots of each episode's p50 and p95 policy latency per cell; False when no episode recorded any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(result["cells"])
    series = {stat: [[e["policy_latency_ms"][stat] for e in result["episodes"]
                      if e["cell"] == cell and e.get("policy_latency_ms")] for cell in cells] for stat in ("p50", "p95")}
    if not any(series["p50"]):
        return False
    figure, axes = plt.subplots(1, 2, figsize=(max(7.0, 1.6 * len(cells) + 3), 4.0), sharey=True)
    for axis, stat in zip(axes, ("p50", "p95")):
        axis.boxplot([values or [float("nan")] for values in series[stat]])
        axis.set_xticks(range(1, len(cells) + 1), cells, rotation=30, ha="right", fontsize=8)
        axis.set(title=f"each episode's {stat}", ylabel="ms")
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle("Policy latency per step, by cell")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _link(video: Optional[str], directory: Path) -> Optional[str]:
    """A video's path relative to the report, so the links work wherever the folder is copied."""
    if not video:
        return None
    path = Path(video)
    return os.path.relpath(path if path.is_absolute() else Path.cwd() / path, directory.resolve())


def failed_episodes(result: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    return [{"cell": e["cell"], "task": e["task"], "episode_id": e["episode_id"], "attempt": e.get("attempt", 1),
             "failure": e.get("failure"), "video": _link(e.get("video"), directory)}
            for e in result["episodes"] if not e.get("success_final")]


def provenance_lines(result: dict[str, Any]) -> list[str]:
    prov, run = result.get("provenance", {}), result.get("run", {})
    git = prov.get("git") or {}
    commit = git.get("commit", "unknown") + (" (with uncommitted changes)" if git.get("dirty") else "")
    versions = ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())
    machine = prov.get("machine") or {}
    ray = run.get("ray") or {}
    return [f"git commit: {commit}", f"versions: {versions}",
            f"machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs",
            f"Ray: {ray.get('address', '?')}, {ray.get('nodes', '?')} node(s), resources {ray.get('resources', {})}",
            f"this run: {run.get('episodes_run', '?')} episode runs in {run.get('wall_time_s', '?')} s "
            f"({run.get('resumed_with_done', 0)} episodes were done before it, {run.get('retried', 0)} retried)"]


def markdown(result: dict[str, Any], table: list[dict[str, Any]], failed: list[dict[str, Any]],
             latency_png: bool) -> str:
    lines = [f"# Sweep {result['sweep']}", "",
             "Success (final) is SIMPLER's official rule; brackets hold the 95% Wilson interval.", "",
             "| cell | task | episodes | failed runs | success (final) | success (any step) | grasped | "
             "latency p50 (ms) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in table:
        latency = "-" if row["latency_p50_ms"] is None else f"{row['latency_p50_ms']:.1f}"
        lines.append(f"| {row['cell']} | {row['task']} | {row['episodes']} | {row['failed_runs']} | "
                     + " | ".join(_rate(row[r]) for r in RATES) + f" | {latency} |")
    lines += ["", "![success by cell](report_success.png)", ""]
    if latency_png:
        lines += ["![policy latency](report_latency.png)", ""]
    lines += [f"## Failed episodes ({len(failed)})", ""]
    for item in failed:
        reason = f": run failed ({item['failure']})" if item["failure"] else ""
        video = f" [video]({item['video']})" if item["video"] else ""
        lines.append(f"- {item['cell']} / {item['task']} episode {item['episode_id']}{reason}{video}")
    lines += ["", "## Provenance", ""] + [f"- {line}" for line in provenance_lines(result)]
    lines += ["", "Cells:", ""]
    for cell, entry in result["cells"].items():
        lines.append(f"- `{cell}`: `{json.dumps(entry['settings'])}`")
    lines += ["", "Sweep YAML:", "", "```yaml", result.get("provenance", {}).get("sweep_yaml", "").rstrip(), "```", ""]
    return "\n".join(lines)


def _inline_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def html_page(result: dict[str, Any], table: list[dict[str, Any]], failed: list[dict[str, Any]],
              charts: list[Path]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(title)}</th>" for title in ("cell", "task", "episodes", "failed runs",
                                                         *RATE_TITLES.values(), "latency p50 (ms)"))
    body = []
    for row in table:
        latency = "-" if row["latency_p50_ms"] is None else f"{row['latency_p50_ms']:.1f}"
        cells = [row["cell"], row["task"], row["episodes"], row["failed_runs"], *(_rate(row[r]) for r in RATES),
                 latency]
        body.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
    failures = []
    for item in failed:
        reason = f": run failed ({e(item['failure'])})" if item["failure"] else ""
        video = f' <a href="{e(item["video"])}">video</a>' if item["video"] else ""
        failures.append(f"<li>{e(item['cell'])} / {e(item['task'])} episode {item['episode_id']}{reason}{video}</li>")
    images = "".join(f'<p><img alt="{e(p.stem)}" src="{_inline_png(p)}"></p>' for p in charts)
    provenance = "".join(f"<li>{e(line)}</li>" for line in provenance_lines(result))
    settings = "".join(f"<li><code>{e(cell)}</code>: <code>{e(json.dumps(entry['settings']))}</code></li>"
                       for cell, entry in result["cells"].items())
    yaml_text = e(result.get("provenance", {}).get("sweep_yaml", ""))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}td:first-child,td:nth-child(2){"
             "text-align:left}th{background:#eee}img{max-width:100%}pre{background:#f6f6f6;padding:8px}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Sweep {e(result['sweep'])}</title>"
            f"<style>{style}</style></head><body><h1>Sweep {e(result['sweep'])}</h1>"
            "<p>Success (final) is SIMPLER's official rule; brackets hold the 95% Wilson interval.</p>"
            f"<table><tr>{head}</tr>{''.join(body)}</table>{images}"
            f"<h2>Failed episodes ({len(failed)})</h2><ul>{''.join(failures)}</ul>"
            f"<h2>Provenance</h2><ul>{provenance}</ul><p>Cells:</p><ul>{settings}</ul>"
            f"<p>Sweep YAML:</p><pre>{yaml_text}</pre></body></html>")


def write_report(directory: Path) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` (and the charts' PNGs) in ``directory``, from its results.json."""
    result = load_results(directory)
    table = rows(result)
    if not table:
        raise ValueError(f"DIR: {directory / 'results.json'} has no finished episodes yet")
    success_png, latency_png = directory / "report_success.png", directory / "report_latency.png"
    plot_success(table, success_png)
    has_latency = plot_latency(result, latency_png)
    failed = failed_episodes(result, directory)
    md_path, html_path = directory / "report.md", directory / "report.html"
    md_path.write_text(markdown(result, table, failed, has_latency))
    charts = [success_png] + ([latency_png] if has_latency else [])
    html_path.write_text(html_page(result, table, failed, charts))
    return md_path, html_path
