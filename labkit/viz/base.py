"""What every labkit widget shares: live following, plain-data snapshots, a static fallback.

A widget is an ``ipywidgets.VBox`` with three duties:

* ``snapshot()`` returns plain data (dicts, lists, numbers, strings) describing exactly what is
  drawn; the tests assert on it, and a notebook can print it.
* ``to_html()`` returns the same picture as a static HTML/SVG string. It is sent alongside the
  live widget as the ``text/html`` of the same output, so a notebook exported without a kernel
  (nbconvert skips widget views whose state was not saved) still shows the picture.
* ``await update()`` pulls new data from the source (a running cluster, or a finished recording)
  and redraws; ``follow()`` does that in the background every ``every_s`` seconds, on the
  kernel's own event loop, until ``unfollow()``.

Only an explicit ``update()`` (or ``unfollow()``) refreshes the static fallback, and only of
the output where the widget was shown last: re-sending an output makes JupyterLab re-create the
widget view, which is fine at the end of a step and too much five times a second. Showing the
widget again freezes the fallback of its earlier outputs, so an export reads like the story the
notebook told: each picture as it was until the widget appeared again further down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ipywidgets as widgets

log = logging.getLogger(__name__)


class LiveWidget(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type hints
    """Base class: subclasses implement ``collect`` (async, may do I/O), ``render`` and
    ``snapshot``; ``to_html`` defaults to the rendered body."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._follow_task: asyncio.Task[None] | None = None
        self._handles: list[Any] = []
        self.errors = 0
        """Background updates that raised (each is logged); a test can assert it stays 0."""

    # -- to override --------------------------------------------------------------------------

    async def collect(self) -> None:
        """Pull new data from the source. The default reads nothing."""

    def render(self) -> None:
        """Redraw the live widgets from the collected data."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    # -- updating -----------------------------------------------------------------------------

    async def update(self, *, publish: bool = True) -> dict[str, Any]:
        """Collect, redraw, refresh the static fallback; returns the new :meth:`snapshot`."""
        await self.collect()
        self.render()
        if publish:
            self.publish()
        return self.snapshot()

    def follow(self, every_s: float = 0.25) -> LiveWidget:
        """Update in the background every ``every_s`` seconds until :meth:`unfollow`."""
        if self._follow_task is None or self._follow_task.done():
            self._follow_task = asyncio.get_running_loop().create_task(
                self._follow(every_s), name=f"labkit-viz-{type(self).__name__}"
            )
        return self

    async def unfollow(self) -> dict[str, Any]:
        """Stop following, take a last update, and return the final snapshot."""
        task, self._follow_task = self._follow_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return await self.update()

    @property
    def following(self) -> bool:
        return self._follow_task is not None and not self._follow_task.done()

    async def _follow(self, every_s: float) -> None:
        while True:
            try:
                await self.update(publish=False)
            except asyncio.CancelledError:
                raise
            except Exception:  # a background redraw must never kill the notebook
                self.errors += 1
                log.exception("%s: background update failed", type(self).__name__)
            await asyncio.sleep(every_s)

    # -- display ------------------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/html"] = self.to_html()
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        # Outputs shown earlier keep the picture as of now: in an export, each output shows
        # the state the widget had until it was shown again further down the notebook.
        self.publish()
        self._handles.clear()
        handle = display(  # type: ignore[no-untyped-call]
            self._repr_mimebundle_(), raw=True, display_id=True
        )
        if handle is not None:
            self._handles.append(handle)

    def publish(self) -> None:
        """Send the current picture as the static fallback of every output showing this."""
        if not self._handles:
            return
        bundle = self._repr_mimebundle_()
        for handle in self._handles:
            with contextlib.suppress(Exception):
                handle.update(bundle, raw=True)
