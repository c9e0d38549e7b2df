"""The three outputs of an evaluation: a table on the terminal, REPORT_DIR/report.json and
REPORT_DIR/index.html (precision-recall curves as PNGs, the worst mistakes as thumbnails;
every path relative, nothing fetched from elsewhere: it reads offline)."""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

THUMBNAIL_SIDE = 160
MISTAKES_SHOWN = 8  # per label and kind, in the page
CURVES_DIR = "curves"
THUMBNAILS_DIR = "thumbnails"
JSON_NAME = "report.json"
HTML_NAME = "index.html"


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _threshold(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _table(rows: list[list[str]], right: Iterable[int] = ()) -> str:
    right = set(right)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def terminal_table(report: dict[str, Any]) -> str:
    """The report's numbers as plain text columns."""
    out = []
    if report["type"] == "detect_text":
        text = report["text"]
        rows = [["image", "CER", "WER", "chars"]]
        for image in text["images"]:
            rows.append(
                [
                    _relative(image["path"], report["folder"]),
                    _number(image["cer"]),
                    _number(image["wer"]),
                    str(image["chars"]),
                ]
            )
        rows.append(["overall", _number(text["cer"]), _number(text["wer"]), str(text["chars"])])
        return _table(rows, right=(1, 2, 3))
    boxes = any("ap50" in entry for entry in report["labels"].values())
    header = ["label", "support", "threshold", "precision", "recall", "F1", "TP", "FP", "FN"]
    rows = [header + (["AP@0.5"] if boxes else [])]
    for label, entry in report["labels"].items():
        threshold = _threshold(entry["recommended_threshold"])
        if not entry["target_met"]:
            threshold = f"unmet ({entry['evaluated_at']:g})"
        row = [
            label,
            str(entry["support"]),
            threshold,
            _number(entry["precision"]),
            _number(entry["recall"]),
            _number(entry["f1"]),
            str(entry["tp"]),
            str(entry["fp"]),
            str(entry["fn"]),
        ]
        if boxes:
            row.append(_number(entry.get("ap50")))
        rows.append(row)
    out.append(_table(rows, right=range(1, len(rows[0]))))
    celebrities = report.get("celebrities")
    if celebrities:
        rows = [["threshold", "distance", "true-match rate", "false-match rate", "precision"]]
        for name, key in (("in use", "at_threshold_in_use"), ("recommended", "at_recommended")):
            rates = celebrities[key]
            rows.append(
                [
                    name if name != "recommended" or celebrities["target_met"] else "best F1",
                    f"{rates['threshold']:g}",
                    _number(rates["true_match_rate"]),
                    _number(rates["false_match_rate"]),
                    _number(rates["precision"]),
                ]
            )
        out.append(_table(rows, right=range(1, 5)))
        if celebrities["target_met"]:
            out.append(
                f"set IMAGERECOGNIZE_CELEBRITIES_THRESHOLD={celebrities['recommended_threshold']:g}"
                f" (now {celebrities['threshold_in_use']:g})"
            )
    return "\n\n".join(out)


def write_json(report: dict[str, Any], out: Path) -> Path:
    path = out / JSON_NAME
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    os.replace(temporary, path)  # a reader never sees half a report
    return path


# --- the page ----------------------------------------------------------------------------


def _relative(path: str, folder: str) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:
        return path


def _safe_name(label: str) -> str:
    digest = hashlib.sha1(label.encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40]
    return f"{stem}-{digest}"


def _plot_curve(label: str, entry: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    # A threshold that predicts nothing has no precision: not drawn.
    curve = [p for p in entry["curve"] if p["tp"] + p["fp"]]
    figure, axes = plt.subplots(figsize=(4.2, 3.6), dpi=100)
    axes.plot(
        [p["recall"] for p in curve], [p["precision"] for p in curve], marker=".", markersize=3
    )
    axes.scatter(
        [entry["recall"]],
        [entry["precision"]],
        color="crimson",
        zorder=3,
        label=f"threshold {entry['evaluated_at']:g}",
    )
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(label)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_rates(celebrities: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    curve = celebrities["curve"]
    thresholds = [p["threshold"] for p in curve]
    figure, axes = plt.subplots(figsize=(5.2, 3.6), dpi=100)
    axes.plot(thresholds, [p["true_match_rate"] for p in curve], label="true-match rate")
    axes.plot(thresholds, [p["false_match_rate"] for p in curve], label="false-match rate")
    axes.axvline(celebrities["threshold_in_use"], color="grey", linestyle="--", label="in use")
    if celebrities["recommended_threshold"] is not None:
        axes.axvline(
            celebrities["recommended_threshold"],
            color="crimson",
            linestyle=":",
            label="recommended",
        )
    axes.set_xlabel("IMAGERECOGNIZE_CELEBRITIES_THRESHOLD (distance)")
    axes.set_ylabel("rate")
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _thumbnail(source: str, out: Path) -> str | None:
    """A small copy of the image under out/thumbnails; its relative path, or None."""
    name = hashlib.sha1(source.encode()).hexdigest()[:16] + ".jpg"
    target = out / THUMBNAILS_DIR / name
    if not target.exists():
        try:
            with Image.open(source) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
                image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                image.save(target, "JPEG", quality=80)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
    return f"{THUMBNAILS_DIR}/{name}"


def _mistakes_html(kind: str, mistakes: list[dict[str, Any]], report: dict, out: Path) -> str:
    if not mistakes:
        return f"<p>No {html.escape(kind)}.</p>"
    cells = []
    unit = "distance" if report["type"] == "celebrities" else "score"
    for mistake in mistakes[:MISTAKES_SHOWN]:
        thumb = _thumbnail(mistake["path"], out)
        name = _relative(mistake["path"], report["folder"])
        score = "not found" if mistake["score"] is None else f"{unit} {mistake['score']:g}"
        image = f'<img src="{html.escape(thumb)}" alt="">' if thumb else "<div>(no preview)</div>"
        cells.append(
            f"<figure>{image}<figcaption>{html.escape(name)}<br>{html.escape(score)}"
            f"</figcaption></figure>"
        )
    more = len(mistakes) - MISTAKES_SHOWN
    tail = f"<p>… and {more} more in report.json</p>" if more > 0 else ""
    return f'<h4>{html.escape(kind)}</h4><div class="grid">{"".join(cells)}</div>{tail}'


STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 170px; font-size: 12px; word-break: break-all; }
figure img { max-width: 160px; max-height: 160px; display: block; }
section { border-top: 1px solid #ddd; margin-top: 1.5em; }
pre { background: #f6f6f6; padding: 4px; white-space: pre-wrap; }
"""


def write_html(report: dict[str, Any], out: Path) -> Path:
    (out / CURVES_DIR).mkdir(parents=True, exist_ok=True)
    (out / THUMBNAILS_DIR).mkdir(parents=True, exist_ok=True)
    title = f"imagerecognize evaluate: {report['type']} on {report['folder']}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Model {html.escape(str(report['model']))}; target: "
        f"{html.escape(report['target']['describe'])}; {report['images']['used']} images used, "
        f"{len(report['images']['skipped'])} skipped.</p>",
        f"<pre>{html.escape(terminal_table(report))}</pre>",
    ]
    celebrities = report.get("celebrities")
    if celebrities:
        _plot_rates(celebrities, out / CURVES_DIR / "celebrities-rates.png")
        parts.append(
            f'<img src="{CURVES_DIR}/celebrities-rates.png" alt="match rates by threshold">'
        )
    for label, entry in report["labels"].items():
        picture = f"{CURVES_DIR}/{_safe_name(label)}.png"
        _plot_curve(label, entry, out / picture)
        parts.append(f"<section><h2>{html.escape(label)}</h2>")
        parts.append(f'<img src="{html.escape(picture)}" alt="precision-recall curve">')
        parts.append(
            f"<p>At threshold {entry['evaluated_at']:g}: precision {entry['precision']:.3f}, "
            f"recall {entry['recall']:.3f}, F1 {entry['f1']:.3f} "
            f"({entry['tp']} TP, {entry['fp']} FP, {entry['fn']} FN; support "
            f"{entry['support']})</p>"
        )
        parts.append(
            _mistakes_html("false positives", entry["mistakes"]["false_positives"], report, out)
        )
        parts.append(_mistakes_html("misses", entry["mistakes"]["misses"], report, out))
        parts.append("</section>")
    if report["type"] == "detect_text":
        parts.append("<section><h2>Worst images</h2>")
        for image in report["text"]["images"][: MISTAKES_SHOWN * 2]:
            thumb = _thumbnail(image["path"], out)
            name = _relative(image["path"], report["folder"])
            parts.append(
                f"<h4>{html.escape(name)}: CER {image['cer']:.3f}, WER {image['wer']:.3f}</h4>"
                + (f'<img src="{html.escape(thumb)}" alt="">' if thumb else "")
                + f"<p>expected</p><pre>{html.escape(image['expected'] or '')}</pre>"
                f"<p>found</p><pre>{html.escape(image['found'])}</pre>"
            )
        parts.append("</section>")
    skipped = report["images"]["skipped"]
    if skipped:
        parts.append("<section><h2>Files not used</h2><table><tr><th>file</th><th>why</th></tr>")
        for item in skipped:
            parts.append(
                f"<tr><td>{html.escape(_relative(item['path'], report['folder']))}</td>"
                f"<td>{html.escape(item['reason'])}</td></tr>"
            )
        parts.append("</table></section>")
    parts.append("</body></html>")
    path = out / HTML_NAME
    path.write_text("\n".join(parts), "utf-8")
    return path
