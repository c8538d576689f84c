"""The one HTML page that run, study and sanity reports are drawn on.

Each report builds its body (headings, tables, figures); :func:`html_page`
wraps it with the shared style and plotly.js, inlined once in the head, so a
report is one file that opens offline.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
.note, .missing { color: #777; } .missing { font-style: italic; }
.ok { color: #2ca02c; }
"""


def html_page(title: str, body: str, *, style: str = "") -> str:
    """A whole HTML document: ``title`` (escaped here), the shared style plus ``style``, plotly.js
    in the head, then ``body`` (HTML, as given).

    Example:
        >>> page = html_page("run digits", "<h1>run digits</h1>" + figure_html(fig))  # doctest: +SKIP
    """
    from plotly.offline import get_plotlyjs

    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}{style}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n'
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def figure_html(fig: Any, div_id: str | None = None, **options: Any) -> str:
    """One plotly figure as a ``<div>`` for :func:`html_page` (which carries plotly.js)."""
    import plotly.io as pio

    return str(
        pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"responsive": True},
            **options,
        )
    )


def write_text_file(path: str | os.PathLike[str], text: str) -> Path:
    """Writes ``text`` beside ``path`` and renames it over it, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
