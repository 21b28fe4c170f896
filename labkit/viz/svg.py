"""Tiny SVG and HTML builders shared by the widgets, and the one palette they all use.

Every widget renders to a string of SVG or HTML: the same string goes into the live
``ipywidgets.HTML`` and into the ``text/html`` fallback that an exported notebook shows without a
kernel, so what a reader sees in a static export is exactly what the live widget last drew.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

PALETTE: dict[str, str] = {
    # fanout graph
    "idle": "#9ca3af",
    "active": "#2563eb",
    "path": "#f59e0b",
    "lost": "#dc2626",
    "repair": "#16a34a",
    "unsubscribed": "#d1d5db",
    "wasted": "#f87171",
    "down": "#6b7280",
    # sequence timeline
    "live": "#2563eb",
    "gap_filled": "#16a34a",
    "missing": "#dc2626",
    "duplicate": "#a855f7",
    "reset": "#f59e0b",
    "pending": "#f3f4f6",
    # presence
    "online": "#16a34a",
    "offline": "#9ca3af",
    "typing": "#f59e0b",
    # verdicts
    "ok": "#16a34a",
    "bad": "#dc2626",
}
"""Colour by meaning. A legend always names the meaning, never only the colour."""

FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"


def attrs(values: Mapping[str, object]) -> str:
    """``key="value"`` pairs, escaped; ``None`` values are left out; ``_`` becomes ``-``."""
    return " ".join(
        f'{k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"'
        for k, v in values.items()
        if v is not None
    )


def el(tag: str, body: str = "", **values: object) -> str:
    """One SVG or HTML element; ``body`` is inserted as is (escape text with :func:`text`)."""
    inner = attrs(values)
    opening = f"<{tag} {inner}" if inner else f"<{tag}"
    return f"{opening}>{body}</{tag}>" if body else f"{opening}/>"


def text(value: object) -> str:
    return escape(str(value), quote=False)


def svg(width: float, height: float, body: Iterable[str], *, label: str) -> str:
    """A standalone ``<svg>`` with a viewBox, so it scales with its container."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" role="img" aria-label="{escape(label)}" '
        f'style="max-width:100%;height:auto;{FONT}">' + "".join(body) + "</svg>"
    )


def legend_html(items: Iterable[tuple[str, str]]) -> str:
    """A one-line legend: ``(meaning, colour)`` pairs as swatches with their names."""
    parts = [
        f'<span style="display:inline-flex;align-items:center;margin-right:12px">'
        f'<span style="display:inline-block;width:12px;height:12px;background:{colour};'
        f'border-radius:2px;margin-right:4px"></span>{text(name)}</span>'
        for name, colour in items
    ]
    return f'<div style="{FONT};font-size:12px;margin:4px 0">{"".join(parts)}</div>'


def table_html(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    """A small HTML table (values escaped; a value of type :class:`Raw` is inserted as is)."""
    head = "".join(
        f'<th style="text-align:left;padding:2px 10px 2px 0">{text(h)}</th>' for h in headers
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="padding:2px 10px 2px 0">{v if isinstance(v, Raw) else text(v)}</td>'
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table style="{FONT};font-size:13px;border-collapse:collapse">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


class Raw(str):
    """A string of markup that :func:`table_html` must not escape."""

    __slots__ = ()


def badge(label: str, colour: str) -> Raw:
    return Raw(
        f'<span style="background:{colour};color:white;border-radius:3px;padding:0 6px">'
        f"{text(label)}</span>"
    )


def table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> Any:
    """:func:`table_html` as an ``IPython.display.HTML`` object, for a notebook cell."""
    from IPython.display import HTML

    return HTML(table_html(headers, rows))  # type: ignore[no-untyped-call]
