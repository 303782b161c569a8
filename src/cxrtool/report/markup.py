"""HTML building blocks of the report pages: escaped text, tables, collapsible parts, inlined figures.

Every string that comes from a file (a label, a path, a reason) passes through `esc`, so a
hostile label such as `<script>` shows as text. Figures are inlined as base64 PNG (the page is one
file, with nothing fetched) and shown at their own pixel size, so that text drawn at a readable
size stays readable; a click opens one at full size over the page (a few lines of inline script,
no library). Tables are given human headings by their callers and cells already formatted.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# "0.871 [0.822, 0.915]": an interval is never broken over lines (its spaces become non-breaking).
INTERVAL = re.compile(r"-?\d[\d.,]*(?:e-?\d+)? \[-?[\d.]+(?:e-?\d+)?, -?[\d.]+(?:e-?\d+)?\]")


def cell(value: object) -> str:
    return INTERVAL.sub(lambda m: m.group(0).replace(" ", "&nbsp;"), esc(value))


def table(
    columns: Sequence[str], rows: Sequence[Sequence[object]], cls: str = "t", left: int = 1, text: Sequence[int] = ()
) -> str:
    """A table with escaped headings and cells; the first `left` columns and those in `text` are
    left-aligned (names, words: they may wrap), the others right-aligned (numbers: they do not)."""
    at_left = set(range(left)) | set(text)
    head = "".join(f"<th{' class=l' if i in at_left else ''}>{esc(c)}</th>" for i, c in enumerate(columns))
    body = "".join(
        "<tr>" + "".join(f"<td{' class=l' if i in at_left else ''}>{cell(c)}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<div class=wide><table class={cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def key_values(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of names and values (the run's description)."""
    body = "".join(f"<tr><th class=l>{esc(k)}</th><td class=l>{esc(v)}</td></tr>" for k, v in rows)
    return f"<div class=wide><table class='t kv'>{body}</table></div>"


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible part: `summary` is text (escaped), `body` is HTML."""
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def note(text: str) -> str:
    return f"<p class=note>{esc(text)}</p>"


def png_figure(data: bytes, alt: str, caption: str = "") -> str:
    """An inlined PNG at its own size (never wider than the page), opened full size on a click."""
    encoded = base64.b64encode(data).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return (
        f'<figure class=fig><img class=zoom alt="{esc(alt)}" title="click to open full size" '
        f'src="data:image/png;base64,{encoded}">{cap}</figure>'
    )


def file_figure(path: Path, alt: str, caption: str = "") -> str:
    return png_figure(Path(path).read_bytes(), alt, caption)


def file_link(path: Path, page: Path, text: str | None = None) -> str:
    """A link to a file beside the page (relative, so the folder can move); the file's name by default."""
    try:
        href = os.path.relpath(Path(path).resolve(), Path(page).resolve().parent)
    except ValueError:  # another drive (Windows): an absolute link
        href = str(Path(path).resolve())
    return f'<a href="{esc(Path(href).as_posix())}">{esc(text or Path(path).name)}</a>'


def missing(what: str, command: str) -> str:
    return f"<p class=note>{esc(what)} not run yet: <code>{esc(command)}</code></p>"


CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;color:#1d1d1d;padding:12px 16px 40px}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.3em;border-bottom:1px solid #ccc;padding-bottom:.15em;margin-top:1.8em}
h3{font-size:1.1em;margin-top:1.4em}h4{font-size:1em;margin:1.2em 0 .3em}
.sub{color:#555;margin:.1em 0 .6em}
.headline{border:1px solid #b9c6d6;background:#f3f7fb;border-radius:6px;padding:10px 16px;margin:10px 0}
.headline h2{border:0;margin:0 0 .2em;font-size:1.15em}
.headline .answer{font-size:1.45em;font-weight:600;margin:.1em 0}
.headline ul{margin:.4em 0 .2em;padding-left:1.2em}.headline li{margin:.15em 0}
.warn{color:#8a3b00}.warn b{color:#6e2f00}.ok{color:#2d6a2d}
.wide{max-width:100%;overflow-x:auto}
table.t{border-collapse:collapse;font-size:14px;margin:.4em 0}
table.t td,table.t th{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
table.t th{background:#f2f2f2;font-weight:600}table.t .l{text-align:left}
table.t td{font-variant-numeric:tabular-nums;white-space:nowrap}table.t td.l{white-space:normal}table.t td:first-child{white-space:nowrap}
details{margin:.5em 0}summary{cursor:pointer;color:#1f4f82}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:13px;max-height:480px}
figure.fig{margin:.6em 0;display:inline-block;vertical-align:top;max-width:100%}
figure.fig img{max-width:100%;height:auto;cursor:zoom-in}
figcaption{font-size:13px;color:#555;max-width:640px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.note{color:#666;font-style:italic}code{font-size:.92em}
#zoom{position:fixed;inset:0;background:rgba(20,20,20,.88);display:none;overflow:auto;z-index:10;cursor:zoom-out;text-align:center}
#zoom img{max-width:none;background:#fff;margin:20px auto}
"""

# Click a figure: it opens at its full pixel size over the page; click again (or Escape) closes it.
SCRIPT = """
(function(){
  var box=document.getElementById('zoom'), img=box.querySelector('img');
  document.addEventListener('click',function(e){
    var t=e.target;
    if(t.classList&&t.classList.contains('zoom')){img.src=t.src;img.alt=t.alt;box.style.display='block';}
    else if(box.contains(t)){box.style.display='none';}
  });
  document.addEventListener('keydown',function(e){if(e.key==='Escape'){box.style.display='none';}});
})();
"""


def page(title: str, body: str) -> str:
    """The whole document: no external reference (styles and script inline, images as data URIs)."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{body}\n"
        f'<div id="zoom"><img alt=""></div><script>{SCRIPT}</script></body></html>\n'
    )
