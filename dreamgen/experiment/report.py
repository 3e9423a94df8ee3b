"""A report a person can look at: dream contact sheets, loss curves, IDM error, success tables.

Written as `report.html` (self-contained page, images beside it) and `report.md` (same content).
"""

from __future__ import annotations

import csv
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamgen.data.video import read_video, video_info
from dreamgen.intervals import wilson_interval


@dataclass
class DreamEntry:
    video: Path
    instruction: str
    sheet_png: Path
    scores: dict[str, str] = field(default_factory=dict)  # e.g. {"IF": "1", "PA": "failed"}
    kept: bool | None = None


@dataclass
class SuccessRow:
    policy: str
    behavior: str
    env: str
    successes: int
    episodes: int

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)


@dataclass
class Report:
    title: str
    intro: str = ""
    steps: list[tuple[str, str]] = field(default_factory=list)  # (step, what / where)
    dreams: list[DreamEntry] = field(default_factory=list)
    curves: list[tuple[str, Path]] = field(default_factory=list)  # (caption, png)
    metrics: list[tuple[str, str]] = field(default_factory=list)  # (name, value)
    policies: list[tuple[str, str]] = field(default_factory=list)  # (policy run, the data it trained on)
    rollouts: list[tuple[str, Path]] = field(default_factory=list)  # (caption, mp4 under the report's folder)
    success: list[SuccessRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def contact_sheet(video: str | Path, out_png: str | Path, scale: int = 2) -> Path:
    """First, middle and last frame side by side (nearest-neighbour upscaled so 64 px stays legible)."""
    from PIL import Image

    n = video_info(video).num_frames
    frames = read_video(video, [0, n // 2, n - 1])
    sep = np.full((frames.shape[1], 2, 3), 255, np.uint8)
    row = np.concatenate([frames[0], sep, frames[1], sep, frames[2]], axis=1)
    img = Image.fromarray(row)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    img.save(out_png)
    return out_png


def plot_loss_csv(csv_path: str | Path, out_png: str | Path, title: str, y: str = "loss", x: str = "step") -> Path:
    """Plot columns of a loss CSV (every column whose name contains `y`) against `x`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    if rows:
        cols = [c for c in rows[0] if y in c and c != x]
        for c in cols:
            pts = [(float(r[x]), float(r[c])) for r in rows if r.get(c) not in (None, "", "nan")]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=c)
        ax.legend(fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png


def _rel(path: Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def _fmt_rate(row: SuccessRow) -> str:
    lo, hi = row.ci
    return f"{100 * row.rate:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] ({row.successes}/{row.episodes})"


def _success_pivot(rows: list[SuccessRow]) -> tuple[list[str], list[tuple[str, str]], dict]:
    policies = list(dict.fromkeys(r.policy for r in rows))
    cells = list(dict.fromkeys((r.behavior, r.env) for r in rows))
    table = {(r.policy, r.behavior, r.env): r for r in rows}
    return policies, cells, table


def _two_column_table(h: list[str], md: list[str], title: str, table_id: str, header: tuple[str, str],
                      rows: list[tuple[str, str]]) -> None:
    """Append a titled two-column table to the HTML (`h`) and Markdown (`md`) line lists."""
    h.append(f"<h2>{title}</h2><table id='{table_id}'><tr><th>{header[0]}</th><th>{header[1]}</th></tr>")
    md += [f"## {title}", "", f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    for k, v in rows:
        h.append(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>")
        md.append(f"| {k} | {v} |")
    h.append("</table>")
    md.append("")


def _figures(h: list[str], md: list[str], title: str, items: list[tuple[str, Path]], out_dir: Path, bang: str,
             media: Callable[[str, str], str]) -> None:
    """Append a titled row of captioned figures: `media(src, caption)` in the HTML, a Markdown link (an image
    with `bang` = "!") per item."""
    h.append(f"<h2>{title}</h2>")
    md += [f"## {title}", ""]
    for caption, path in items:
        src = _rel(path, out_dir)
        h.append(f"<figure style='display:inline-block'>{media(src, caption)}"
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        md += [f"{bang}[{caption}]({src})", ""]


def _video_tag(src: str, width: int) -> str:
    """A looping, muted (so browsers autoplay it) video of an mp4 beside the page, with a link as fallback."""
    return (f"<video src='{html.escape(src)}' width='{width}' controls loop muted autoplay playsinline>"
            f"<a href='{html.escape(src)}'>{html.escape(src)}</a></video>")


def _dreams(h: list[str], md: list[str], dreams: list[DreamEntry], out_dir: Path) -> None:
    """Each dream plays in the page beside its contact sheet, with the judge's verdict."""
    h.append("<h2>Dreamed videos</h2><p>each dream (it plays), its first / middle / last frame and the judge's "
             "score</p>")
    md += ["## Dreamed videos", "", "Each dream (linked mp4), its first / middle / last frame and the judge's "
           "score.", ""]
    for d in dreams:
        scores = ", ".join(f"{k}={v}" for k, v in d.scores.items()) or "not scored"
        state = "" if d.kept is None else (" — kept" if d.kept else " — filtered out")
        cls = "" if d.kept is None else ("kept" if d.kept else "dropped")
        src, video = _rel(d.sheet_png, out_dir), _rel(d.video, out_dir)
        h.append(f"<div class='dream'>{_video_tag(video, 192)}<img src='{src}' alt='{html.escape(d.instruction)}' "
                 f"width='390'><br><b>{html.escape(d.instruction)}</b><br><span class='{cls} score'>"
                 f"{html.escape(scores + state)}</span></div>")
        md += [f"![{d.instruction}]({src})", f"**{d.instruction}** — [video]({video}) — {scores}{state}", ""]


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.html and report.md into `out_dir` (images must already live under it)."""
    out_dir = Path(out_dir)
    h: list[str] = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}"
        "th{background:#f3f3f3}.dream{display:inline-block;margin:6px;vertical-align:top;width:400px}"
        "img,video{image-rendering:pixelated}.kept{color:#070}.dropped{color:#a00}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    md: list[str] = [f"# {report.title}", ""]
    if report.intro:
        h.append(f"<p>{html.escape(report.intro)}</p>")
        md += [report.intro, ""]
    if report.steps:
        _two_column_table(h, md, "Pipeline", "steps", ("step", "output"), report.steps)
    if report.dreams:
        _dreams(h, md, report.dreams, out_dir)
    if report.curves:
        _figures(h, md, "Training curves", report.curves, out_dir, "!",
                 lambda src, caption: f"<img src='{src}' alt='{html.escape(caption)}'>")
    if report.metrics:
        _two_column_table(h, md, "Metrics", "metrics", ("metric", "value"), report.metrics)
    if report.policies:
        _two_column_table(h, md, "Policies", "policies", ("policy", "trained on"), report.policies)
    if report.rollouts:
        _figures(h, md, "Rollouts", report.rollouts, out_dir, "", lambda src, caption: _video_tag(src, 192))
    if report.success:
        policies, cells, table = _success_pivot(report.success)
        h.append("<h2>Closed-loop success</h2><p>success rate, 95% Wilson interval, (successes/episodes)</p>"
                 "<table id='success'><tr><th>behavior</th><th>environment</th>"
                 + "".join(f"<th>{html.escape(p)}</th>" for p in policies) + "</tr>")
        md += ["## Closed-loop success", "", "Success rate, 95% Wilson interval, (successes/episodes).", "",
               "| behavior | environment | " + " | ".join(policies) + " |",
               "| --- | --- | " + " | ".join("---" for _ in policies) + " |"]
        for b, e in cells:
            vals = [_fmt_rate(table[(p, b, e)]) if (p, b, e) in table else "—" for p in policies]
            h.append(f"<tr><td>{html.escape(b)}</td><td>{html.escape(e)}</td>"
                     + "".join(f"<td>{html.escape(v)}</td>" for v in vals) + "</tr>")
            md.append(f"| {b} | {e} | " + " | ".join(vals) + " |")
        h.append("</table>")
        md.append("")
    if report.notes:
        h.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul>")
        md += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    h.append("</body></html>")
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    for path, text in ((html_path, "\n".join(h)), (md_path, "\n".join(md))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return html_path, md_path
