"""What every panel shares: its heading (the panel's name and what it is for)."""
from __future__ import annotations

import html

import ipywidgets as W


def heading(title: str, what: str) -> W.HTML:
    """A panel's heading: its name and one line on what it is for."""
    return W.HTML(f"<div style='margin:2px 0 6px'><b style='font-size:1.15em'>{html.escape(title)}</b>"
                  f"<span style='color:#555'> — {html.escape(what)}</span></div>")
