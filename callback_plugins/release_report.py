"""Release report: what a site.yml run did, for people.

At the end of a run of one of the report playbooks (site.yml by default), writes
``artifacts/reports/<UTC time>/`` with

- ``report.md``    a Markdown summary,
- ``report.html``  the same as one self-contained page (CSS and plot inlined),
- ``latency.png``  the gate's latency figures per host,
- ``report.json``  the data behind them (what tests compare with the hosts),

and prints the summary table as the run's last lines. Stages are plays grouped
by their first tag (site.yml tags each stage); per-host outcomes, compile and
image facts come from the roles' ``ansible.builtin.set_stats`` data:

- ``hailo_compile`` (run-wide): model, version, target, sha256, parity, golden
- ``hailo_image``   (run-wide): image, tag, digest, platforms
- ``hailo_deploy``  (per host): result, reason, image, artifact_sha256,
  gate {p50_ms, p95_ms, golden, ...}

Settings (environment): HAILO_REPORT_PLAYBOOKS (comma-separated playbook file
names, default ``site.yml``), HAILO_REPORT_DIR (default: ``artifacts/reports``
beside the playbooks directory).
"""

from __future__ import annotations

import base64
import getpass
import html
import io
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: release_report
    type: aggregate
    short_description: Writes a Markdown/HTML release report for site.yml runs
    description:
      - Collects stage timings, per-host outcomes and the roles' set_stats data and
        writes artifacts/reports/<time>/ (report.md, report.html, latency.png, report.json).
    requirements:
      - enable in ansible.cfg (callbacks_enabled = release_report)
      - matplotlib on the controller, for the latency plot
"""

# ---------------------------------------------------------------------------
# Rendering: pure functions of the report data (a dict, as in report.json).
# ---------------------------------------------------------------------------

# A host's result: deployed, unchanged, rolled_back, skipped, failed, broken (a restore that
# did not work: the host needs a person) or unreachable.


def _fmt_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _short(digest: str | None, keep: int = 19) -> str:
    return "" if not digest else digest if len(digest) <= keep else digest[:keep] + "…"


def _ms(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f}"


def stage_rows(data: dict[str, Any]) -> list[list[str]]:
    return [
        [s["name"], _fmt_seconds(s["seconds"]), str(s["changed"]), str(s["failed"])]
        for s in data["stages"]
    ]


def host_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for h in data["hosts"]:
        gate = h.get("gate") or {}
        rows.append(
            [
                h["host"],
                h["result"],
                h.get("reason") or "",
                _short(h.get("image_digest")),
                _short(h.get("artifact_sha256"), 12),
                _golden_cell(gate.get("golden")),
                _ms(gate.get("p50_ms")),
                _ms(gate.get("p95_ms")),
            ]
        )
    return rows


def _golden_cell(golden: Any) -> str:
    """The gate's golden check, per output: max abs error and min cosine."""
    if not isinstance(golden, dict) or not golden.get("outputs"):
        return ""
    cells = [
        f"{name} {fig['max_abs_error']:.3g} / {fig['min_cosine_similarity']:.6f}"
        for name, fig in sorted(golden["outputs"].items())
    ]
    return ("" if golden.get("ok", True) else "FAILED: ") + "; ".join(cells)


HOST_HEADER = [
    "host",
    "result",
    "why",
    "image digest",
    "artifact sha256",
    "golden check (max abs error / min cosine)",
    "p50 ms",
    "p95 ms",
]
# changed and failed count hosts (a host with any changed task), not tasks.
STAGE_HEADER = ["stage", "time", "hosts changed", "hosts failed"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        + [fmt.format(*r) for r in rows]
    )


def _parity_rows(compile_: dict[str, Any]) -> list[list[str]]:
    parity = compile_.get("parity") or {}
    abs_err = parity.get("max_abs_error") or {}
    cosine = parity.get("cosine_similarity") or {}
    return [
        [name, f"{abs_err[name]:.4g}", f"{cosine.get(name, float('nan')):.6f}"]
        for name in sorted(abs_err)
    ]


def _golden_line(compile_: dict[str, Any]) -> str:
    golden = compile_.get("golden") or {}
    if not golden.get("file"):
        return ""
    return (
        f"Golden vectors {golden['file']} ({golden.get('windows')} windows, "
        f"{golden.get('produced_by')}), sha256 {golden.get('sha256')}"
    )


DRY_RUN = "dry run (--check): nothing was changed; the figures are what would change"


def render_markdown(data: dict[str, Any], plot_name: str | None) -> str:
    run = data["run"]
    parts = [
        f"# Release report: {run['playbook']} ({run['outcome']})",
        "",
        *([f"- **{DRY_RUN}**"] if run.get("check_mode") else []),
        f"- Started {run['started']} UTC, took {_fmt_seconds(run['seconds'])}",
        f"- By {run['user']} on {run['controller']}, inventory `{run['inventory']}`",
        "",
        "## Stages",
        "",
        _md_table(STAGE_HEADER, stage_rows(data)),
        "",
    ]
    compile_ = data.get("compile")
    if compile_:
        parts += [
            "## Compile",
            "",
            "{model} {version}, target `{target}`, sha256 `{sha256}`".format_map(compile_),
            "",
        ]
        if _golden_line(compile_):
            parts += [_golden_line(compile_), ""]
        if _parity_rows(compile_):
            parts += [
                _md_table(["output", "max abs error", "cosine similarity"], _parity_rows(compile_)),
                "",
            ]
    image = data.get("image")
    if image:
        parts += [
            "## Image",
            "",
            "`{image}:{tag}` ({platforms}), digest `{digest}`".format_map(_image_fields(image)),
            "",
        ]
    parts += ["## Hosts", "", _md_table(HOST_HEADER, host_rows(data)), ""]
    if plot_name:
        parts += [f"![gate latency per host]({plot_name})", ""]
    if data.get("latency_note"):
        parts += [f"_{data['latency_note']}_", ""]
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1d2430}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0}
td,th{padding:.3rem .7rem;border:1px solid #ccd;text-align:left}
th{background:#f1f3f8} code{background:#f1f3f8;padding:0 .2rem}
.deployed,.unchanged{color:#176b2c;font-weight:600}
.rolled_back,.failed,.broken,.unreachable{color:#a11;font-weight:600}
.skipped{color:#8a6100;font-weight:600} .note{color:#556;font-style:italic}
"""


def _image_fields(image: dict[str, Any]) -> dict[str, str]:
    return {
        "image": str(image.get("image")),
        "tag": str(image.get("tag")),
        "digest": str(image.get("digest")),
        "platforms": ", ".join(image.get("platforms") or []),
    }


def _escaped(fields: dict[str, Any]) -> dict[str, str]:
    return {k: html.escape(str(v)) for k, v in fields.items()}


def _html_table(header: list[str], rows: list[list[str]], result_col: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = f' class="{html.escape(cell)}"' if i == result_col else ""
            cells.append(f"<td{cls}>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(data: dict[str, Any], png: bytes | None) -> str:
    run = data["run"]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Release report {esc(run['started'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Release report: {esc(run['playbook'])} ({esc(run['outcome'])})</h1>",
        f"<p><strong>{esc(DRY_RUN)}</strong></p>" if run.get("check_mode") else "",
        "<p>Started {started} UTC, took {took}; by {user} on {controller}, "
        "inventory <code>{inventory}</code>.</p>".format_map(
            _escaped({**run, "took": _fmt_seconds(run["seconds"])})
        ),
        "<h2>Stages</h2>",
        _html_table(STAGE_HEADER, stage_rows(data)),
    ]
    compile_ = data.get("compile")
    if compile_:
        parts.append(
            "<h2>Compile</h2><p>{model} {version}, target <code>{target}</code>, "
            "sha256 <code>{sha256}</code></p>".format_map(_escaped(compile_))
        )
        if _golden_line(compile_):
            parts.append(f"<p>{html.escape(_golden_line(compile_))}</p>")
        if _parity_rows(compile_):
            parts.append(
                _html_table(
                    ["output", "max abs error", "cosine similarity"], _parity_rows(compile_)
                )
            )
    image = data.get("image")
    if image:
        parts.append(
            "<h2>Image</h2><p><code>{image}:{tag}</code> ({platforms}), "
            "digest <code>{digest}</code></p>".format_map(_escaped(_image_fields(image)))
        )
    parts += ["<h2>Hosts</h2>", _html_table(HOST_HEADER, host_rows(data), result_col=1)]
    if png:
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<p><img alt='gate latency per host' src='data:image/png;base64,{encoded}'></p>"
        )
    if data.get("latency_note"):
        parts.append(f"<p class='note'>{esc(data['latency_note'])}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_plot(data: dict[str, Any]) -> bytes | None:
    """Bar chart of the gate's p50/p95 per host; None when no host has figures."""
    hosts = [h for h in data["hosts"] if (h.get("gate") or {}).get("p95_ms") is not None]
    if not hosts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [h["host"] for h in hosts]
    p50 = [float(h["gate"].get("p50_ms") or 0) for h in hosts]
    p95 = [float(h["gate"]["p95_ms"]) for h in hosts]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 2), 3.2), dpi=110)
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50", color="#5b8def")
    ax.bar([x + 0.2 for x in xs], p95, width=0.4, label="p95", color="#f0a742")
    budget = data.get("latency_budget_ms")
    # A budget far above every bar would flatten them: then it goes in the title instead.
    if budget and float(budget) > 4 * max(p95):
        ax.set_title(f"p95 budget {budget} ms (off this scale)", fontsize=9)
    elif budget:
        ax.axhline(
            float(budget),
            color="#a11",
            linestyle="--",
            linewidth=1,
            label=f"p95 budget {budget} ms",
        )
    ax.set_xticks(list(xs), names, rotation=20, ha="right")
    ax.set_ylabel("gate latency of /infer (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def write_report(data: dict[str, Any], directory: Path) -> Path:
    """Write report.{json,md,html} and latency.png into a new directory; returns it."""
    directory.mkdir(parents=True, exist_ok=False)
    png = render_plot(data)
    plot_name = "latency.png" if png else None
    if png:
        (directory / plot_name).write_bytes(png)
    (directory / "report.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (directory / "report.md").write_text(render_markdown(data, plot_name))
    (directory / "report.html").write_text(render_html(data, png))
    return directory


# ---------------------------------------------------------------------------
# Collection: the callback.
# ---------------------------------------------------------------------------


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "release_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._playbook: Path | None = None
        self._active = False
        self._started = time.time()
        self._stages: list[dict[str, Any]] = []
        self._inventory = ""

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = Path(playbook._file_name).resolve()
        wanted = os.environ.get("HAILO_REPORT_PLAYBOOKS", "site.yml").split(",")
        self._active = self._playbook.name in {w.strip() for w in wanted if w.strip()}
        self._started = time.time()

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if not self._active:
            return
        if not self._inventory:
            sources = play.get_variable_manager()._inventory._sources
            self._inventory = ", ".join(os.path.relpath(s) for s in sources)
        tags = list(play.tags or [])
        name = tags[0] if tags else play.get_name()
        now = time.time()
        if self._stages:
            self._stages[-1]["end"] = now
        if self._stages and self._stages[-1]["name"] == name:
            self._stages[-1]["end"] = None
            return
        self._stages.append(
            {"name": name, "start": now, "end": None, "changed": set(), "failed": set()}
        )

    def _mark(self, result: Any, key: str) -> None:
        if self._active and self._stages:
            self._stages[-1][key].add(result._host.get_name())

    def v2_runner_on_ok(self, result: Any) -> None:
        if result._result.get("changed"):
            self._mark(result, "changed")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._mark(result, "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._mark(result, "failed")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._active:
            return
        data = self._collect(stats)
        root = Path(
            os.environ.get("HAILO_REPORT_DIR")
            or self._playbook.parent.parent / "artifacts" / "reports"
        )
        directory = write_report(data, root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
        self._display.banner(
            "RELEASE REPORT" + (f": {DRY_RUN}" if data["run"]["check_mode"] else "")
        )
        self._display.display(text_table(STAGE_HEADER, stage_rows(data)))
        self._display.display("")
        self._display.display(text_table(HOST_HEADER, host_rows(data)))
        self._display.display(f"\nReport: {directory / 'report.html'} (and report.md)")

    def _collect(self, stats: Any) -> dict[str, Any]:
        end = time.time()
        custom = getattr(stats, "custom", {}) or {}
        run_wide = custom.get("_run", {})
        hosts = []
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            deploy = (custom.get(host) or {}).get("hailo_deploy")
            if deploy:
                entry = {
                    "host": host,
                    "result": deploy.get("result", "unknown"),
                    "reason": deploy.get("reason"),
                    "image_digest": deploy.get("image"),
                    "artifact_sha256": deploy.get("artifact_sha256"),
                    "gate": deploy.get("gate"),
                }
            elif summary["unreachable"]:
                entry = {"host": host, "result": "unreachable", "reason": "host unreachable"}
            elif summary["failures"]:
                entry = {
                    "host": host,
                    "result": "failed",
                    "reason": "a task failed (see the run's log)",
                }
            else:
                continue  # a build-side host (GPUSrv, registry): its work shows in the stages
            hosts.append(entry)
        budget = next(
            (
                d["hailo_deploy"].get("latency_budget_ms")
                for d in custom.values()
                if isinstance(d, dict) and "hailo_deploy" in d
            ),
            None,
        )
        failed = any(
            stats.summarize(h)["failures"] or stats.summarize(h)["unreachable"]
            for h in stats.processed
        )
        return {
            "schema": 1,
            "run": {
                "playbook": self._playbook.name,
                "outcome": "failed" if failed else "succeeded",
                # --check: the stages' "changed" counts are what a real run would change.
                "check_mode": bool(context.CLIARGS.get("check", False)),
                "started": datetime.fromtimestamp(self._started, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": round(end - self._started, 1),
                "user": getpass.getuser(),
                "controller": os.uname().nodename,
                "inventory": self._inventory,
            },
            "stages": [
                {
                    "name": s["name"],
                    "seconds": round((s["end"] or end) - s["start"], 1),
                    "changed": len(s["changed"]),
                    "failed": len(s["failed"]),
                }
                for s in self._stages
            ],
            "compile": run_wide.get("hailo_compile"),
            "image": run_wide.get("hailo_image"),
            "hosts": hosts,
            "latency_budget_ms": budget,
            "latency_note": run_wide.get("hailo_latency_note"),
        }
