"""A live run as HTML and text: the header (elapsed, ETA, cost, warnings), the
progress bar, a one-line status, the log tail and the SVG chart.

What the RunPanel draws in HTML mode and puts in its widgets; every string that
came from the run goes through `esc`.
"""

from __future__ import annotations

from ._format import FINAL, LOCAL_COST, esc, fmt_cost, fmt_duration, run_elapsed
from .debug_attach import attach_html
from .figures import svg_chart
from .run_feed import RunFeed
from .summary import header_html


def live_header_html(feed: RunFeed) -> str:
    run = feed.run
    facts = []
    elapsed = run_elapsed(run)
    if elapsed is not None:
        facts.append(f"elapsed {esc(fmt_duration(elapsed))}")
    if run.get("status") not in FINAL:
        eta = feed.eta()
        if eta is not None:
            facts.append(f"ETA {esc(fmt_duration(eta))}")
    cost = fmt_cost(run)
    if cost != LOCAL_COST:  # the header already names the local backend once
        facts.append(f'<span class="runctl-cost">{esc(cost)}</span>')
    html_ = header_html(run, extra=" · ".join(facts))
    if feed.warnings:
        html_ += "".join(f'<div style="color:#ef6c00">⚠ {esc(w)}</div>' for w in feed.warnings)
    if feed.debugger is not None and run.get("status") not in FINAL:
        html_ += attach_html(feed.debugger)
    return html_


def progress_text(feed: RunFeed) -> str:
    if feed.step is None:
        return feed.phase or "waiting for the first metric…"
    if feed.total:
        pct = 100.0 * min(feed.step, feed.total) / feed.total
        return f"step {feed.step} / {feed.total} ({pct:.0f}%)"
    return f"step {feed.step}"


def status_line(feed: RunFeed) -> str:
    """One line of plain text: id, status, progress, elapsed, cost."""
    run = feed.run
    bits = [
        f"run {run.get('id')} {run.get('name') or ''}".rstrip(),
        f"[{run.get('status')}]",
        progress_text(feed),
    ]
    elapsed = run_elapsed(run)
    if elapsed is not None:
        bits.append(f"elapsed {fmt_duration(elapsed)}")
    bits.append(fmt_cost(run))
    return " · ".join(bits)


def progress_html(feed: RunFeed) -> str:
    text = esc(progress_text(feed))
    if feed.step is None and feed.phase_fraction is not None:
        return _bar(100.0 * feed.phase_fraction, text)
    if not feed.total or feed.step is None:
        return f'<div class="runctl-progress">{text}</div>'
    return _bar(100.0 * min(max(feed.step, 0), feed.total) / feed.total, text)


def _bar(pct: float, text: str) -> str:
    return (
        '<div class="runctl-progress" style="display:flex;align-items:center;gap:8px">'
        '<div style="width:240px;height:10px;background:#e0e0e0;border-radius:5px">'
        f'<div style="width:{pct:.1f}%;height:10px;background:#1e88e5;border-radius:5px"></div></div>'
        f"<span>{text}</span></div>"
    )


def log_html(feed: RunFeed) -> str:
    if not feed.log_tail:
        return ""
    lines = []
    for stream, line in feed.log_tail:
        if stream == "stderr":
            lines.append(f'<span class="runctl-stderr" style="color:#c62828">! {esc(line)}</span>')
        else:
            lines.append(f"  {esc(line)}")
    return (
        '<pre class="runctl-log tex2jax_ignore mathjax_ignore" style="max-height:22em;overflow:auto;font-size:0.85em;'
        'margin:4px 0;padding:4px;background:#f7f7f7">' + "\n".join(lines) + "</pre>"
    )


def with_log_tail(bundle: dict, feed: RunFeed) -> dict:
    """The summary bundle with the panel's last lines of output below it (HTML,
    escaped; text/plain stays the summary: the output may hold anything)."""
    n, run_id = len(feed.log_tail), feed.run.get("id")
    title = f"last {n} line{'s' if n != 1 else ''} of output (%runctl logs {run_id} has all)"
    return {
        **bundle,
        "text/html": bundle["text/html"]
        + f'<div style="color:#666;font-size:0.85em;margin-top:6px">{esc(title)}</div>'
        + log_html(feed),
    }


def live_html(feed: RunFeed, message: str = "") -> str:
    return (
        live_header_html(feed)
        + progress_html(feed)
        + (f'<div style="color:#c62828">{esc(message)}</div>' if message else "")
        + log_html(feed)
    )


def chart_html(feed: RunFeed, smoothing: bool = False) -> str:
    svg = svg_chart([(name, xs, ys) for name, _, xs, ys in feed.traces(smoothing)])
    return f'<div class="runctl-figure tex2jax_ignore mathjax_ignore">{svg}</div>' if svg else ""
