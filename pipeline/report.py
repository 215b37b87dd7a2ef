"""``report.html``: a self-contained page (no scripts or fonts from the network) with a summary
per stream, a timeline of its violations, the violations with evidence highlighted and clips,
and the inputs that failed.  All text from streams is escaped: transcripts are hostile input.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from pipeline.sinks import Database, atomic_write, now_iso

COLORS = {"false_claim": "#d9822b", "banned_product": "#c23030", "fraud": "#7157d9", "vulgar": "#db2c6f"}

CSS = """
body{font-family:system-ui,"Noto Sans CJK SC","PingFang SC",sans-serif;margin:2rem;color:#182026}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{border-bottom:1px solid #eee;padding:.35rem .5rem;text-align:left;vertical-align:top}
.timeline{position:relative;height:34px;background:#f3f5f7;border-radius:4px;margin:.5rem 0 1rem}
.tick{position:absolute;top:4px;height:26px;min-width:3px;border-radius:2px;opacity:.85}
.tag{display:inline-block;padding:0 .4rem;border-radius:3px;color:#fff;font-size:.8rem}
mark{background:#ffe08a;padding:0 .1rem}.basis{color:#5c7080;font-size:.8rem}
.sev-high{font-weight:700;color:#c23030}.muted{color:#8a9ba8}
"""


def fmt_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def highlight(text: str, evidence: list[dict]) -> str:
    """Escape ``text`` and wrap each evidence span in <mark>."""
    spans = sorted({tuple(e["span"]) for e in evidence if e.get("span")})
    out, pos = [], 0
    for a, b in spans:
        if a < pos or b > len(text):
            continue
        out += [escape(text[pos:a]), "<mark>", escape(text[a:b]), "</mark>"]
        pos = b
    out.append(escape(text[pos:]))
    return "".join(out)


def _stream_section(db: Database, s: dict) -> str:
    rows = db.rows(
        "SELECT * FROM violations WHERE stream_id=:s ORDER BY start_s, category, subcategory",
        s=s["stream_id"],
    )
    duration = s["duration"] or max((r["end_s"] for r in rows), default=1.0) or 1.0
    ticks = "".join(
        f'<a class="tick" href="#v-{escape(r["id"])}" title="{fmt_time(r["start_s"])} '
        f'{escape(r["category"])}.{escape(r["subcategory"])}" style="left:{100 * r["start_s"] / duration:.2f}%;'
        f"width:{max(0.3, 100 * (r['end_s'] - r['start_s']) / duration):.2f}%;"
        f'background:{COLORS.get(r["category"], "#555")}"></a>'
        for r in rows
    )
    body = []
    for r in rows:
        ev = json.loads(r["evidence"] or "[]")
        clip = (
            f'<a href="{escape(r["clip"])}">clip</a>' if r["clip"] else '<span class="muted">no clip</span>'
        )
        rules = ", ".join(f"{escape(e['rule'])} ({escape(e['kind'])})" for e in ev)
        body.append(
            f'<tr id="v-{escape(r["id"])}"><td>{fmt_time(r["start_s"])}–{fmt_time(r["end_s"])}</td>'
            f'<td><span class="tag" style="background:{COLORS.get(r["category"], "#555")}">'
            f"{escape(r['category'])}</span><br>{escape(r['subcategory'])}</td>"
            f'<td class="sev-{escape(r["severity"] or "")}">{escape(r["severity"] or "")}<br>{r["score"]:.2f}</td>'
            f'<td>{highlight(r["text"] or "", ev)}<div class="basis">{rules}<br>{escape(r["basis"] or "")}</div></td>'
            f"<td>{clip}</td></tr>"
        )
    table = (
        (
            "<table><tr><th>time</th><th>category</th><th>severity</th><th>what was said</th>"
            "<th>clip</th></tr>" + "".join(body) + "</table>"
        )
        if body
        else "<p>No violations.</p>"
    )
    return (
        f'<h2 id="s-{escape(s["stream_id"])}">{escape(s["stream_id"])}</h2>'
        f'<p class="muted">{escape(s["source"])} · {fmt_time(duration)} · {s["utterances"]} utterances · '
        f"{len(rows)} violations · {escape(s['asr_model'] or '')} · {escape(s['classifier_version'] or '')}</p>"
        f'<div class="timeline">{ticks}</div>{table}'
    )


def write_report(db: Database, out_path: Path, streams: list[str] | None = None) -> Path:
    """Render the database into one offline HTML page; ``streams`` limits it to those streams
    (a database shared by many runs)."""

    def wanted(rows: list[dict]) -> list[dict]:
        return rows if streams is None else [r for r in rows if r["stream_id"] in streams]

    stream_rows = wanted(db.rows("SELECT * FROM streams ORDER BY source"))
    counts = wanted(
        db.rows("SELECT stream_id, category, COUNT(*) AS n FROM violations GROUP BY stream_id, category")
    )
    failed = (
        []
        if streams is not None
        else db.rows("SELECT * FROM inputs WHERE status IN ('failed', 'partial') ORDER BY source")
    )
    per: dict[str, dict[str, int]] = {}
    for r in counts:
        per.setdefault(r["stream_id"], {})[r["category"]] = r["n"]
    summary = "".join(
        f'<tr><td><a href="#s-{escape(s["stream_id"])}">{escape(s["stream_id"])}</a></td>'
        f"<td>{fmt_time(s['duration'] or 0)}</td>"
        + "".join(f"<td>{per.get(s['stream_id'], {}).get(c, 0)}</td>" for c in COLORS)
        + f"<td>{sum(per.get(s['stream_id'], {}).values())}</td></tr>"
        for s in stream_rows
    )
    failures = "".join(
        f"<tr><td>{escape(f['source'])}</td><td>{escape(f['error'] or '')}</td></tr>" for f in failed
    )
    html = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>livemod report</title><style>{CSS}</style></head><body>"
        f"<h1>livemod moderation report</h1><p class='muted'>generated {now_iso()} · "
        f"{len(stream_rows)} streams</p>"
        "<table><tr><th>stream</th><th>duration</th>"
        + "".join(f"<th>{c}</th>" for c in COLORS)
        + "<th>total</th></tr>"
        + summary
        + "</table>"
        + (f"<h2>Inputs that failed</h2><table>{failures}</table>" if failures else "")
        + "".join(_stream_section(db, s) for s in stream_rows)
        + "</body></html>"
    )
    atomic_write(out_path, html)
    return out_path
