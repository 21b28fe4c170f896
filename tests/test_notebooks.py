"""Every notebook runs top to bottom, unattended, in under a minute; none is committed with output.

Each notebook of ``notebooks/`` is executed in a fresh ``python3`` kernel (this interpreter's
ipykernel) with nbclient, the engine nbval runs on, from the ``notebooks/`` folder, as a reader's
kernel would. The notebooks assert their own claims, so a broken claim fails here. Run times
are printed, attached to the test report (``record_property``) and kept in pytest's cache:
``pytest --cache-show 'labkit/notebook_seconds/*'``.

``pytest --nbval-lax notebooks/`` runs them too, without the time limit.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
LIMIT_S = 60.0
ARC = (
    "## Run it",
    "## Watch it",
    "## Break it",
    "## Fix it",
    "## Interview notes",
    "## Check yourself",
)
"""The headings every notebook has, in this order (each may go on: "## Break it: ...")."""
EXPECTED = {
    "00_tour",
    "01_gateways",
    "02_bus_and_fanout",
    "03_sequencer_and_ordering",
    "04_gap_fill",
    "05_presence_and_typing",
    "06_failure_lab",
}


def test_every_notebook_of_the_issue_exists() -> None:
    assert {p.stem for p in NOTEBOOKS} >= EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    assert "widgets" not in nb.metadata, f"{path.name}: saved widget state; clear it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_follows_the_arc(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    headings = [
        line
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if line.startswith("## ")
    ]
    positions = []
    for step in ARC:
        pattern = re.compile(re.escape(step) + r"($|[ :,])")
        found = [i for i, h in enumerate(headings) if pattern.match(h)]
        assert found, f"{path.name} has no '{step}' section (headings: {headings})"
        positions.append(found[0])
    assert positions == sorted(positions), f"{path.name}: the arc is out of order: {headings}"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "**Goal.**" in first.source


def _kernel_manager(folder: Path) -> KernelManager:
    """A kernel on IPC sockets (Linux), named by absolute paths in ``folder``: no TCP ports to
    race for with the clusters the notebooks start, whatever the kernel's working directory."""
    if sys.platform.startswith("linux"):
        return KernelManager(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"))
    return KernelManager(kernel_name="python3")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_within_a_minute(
    path: Path, request: pytest.FixtureRequest, record_property: object, tmp_path: Path
) -> None:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=int(LIMIT_S * 2),
        startup_timeout=60,
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.monotonic()
    client.execute()
    seconds = time.monotonic() - started
    print(f"{path.name} ran in {seconds:.1f} s")
    record_property("seconds", round(seconds, 2))  # type: ignore[operator]
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        cache.set(f"labkit/notebook_seconds/{path.stem}", round(seconds, 2))
    errors = [
        out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"
    ]
    assert not errors, errors
    assert seconds < LIMIT_S, f"{path.name} took {seconds:.1f} s; the limit is {LIMIT_S:g} s"
