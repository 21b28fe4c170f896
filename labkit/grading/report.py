"""Grading results as data, and their rendering for a terminal or a notebook.

The shape of a report::

    ex02_routing     7/8 public checks passed
      ✗ the last local member leaving unsubscribes the gateway
          expected: remove(conn-2, 'general') to return True: conn-2 was the last local member
          happened: it returned False
    ex05_gapfill     0/13 public checks passed: not implemented yet (ChannelFeed.__init__)

A stub says "not implemented yet" once per exercise, never once per check. The summary speaks of
*public* checks: passing them all is a good sign, not a proof of correctness.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Literal

Status = Literal["passed", "failed", "not_implemented"]

_NAME_WIDTH = 16


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    title: str
    status: Status
    expected: str | None = None
    got: str | None = None
    seed: int | None = None
    """Set for a failed randomized check: ``--seed`` replays it."""
    missing: str | None = None
    """For ``not_implemented``: the function that raised ``NotImplementedError``."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True, slots=True)
class ExerciseResult:
    """Every check of one exercise, run against one module."""

    name: str
    title: str
    source: str
    """Where the graded code came from, e.g. ``exercises/ex05_gapfill.py``."""
    checks: tuple[CheckResult, ...]
    import_error: str | None = None
    """Set when the module could not even be imported (a syntax error, say)."""
    seed: int = 0

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.status == "failed")

    @property
    def not_implemented(self) -> tuple[str, ...]:
        """The functions still raising ``NotImplementedError``, in the order checks met them."""
        names = [c.missing or "?" for c in self.checks if c.status == "not_implemented"]
        return tuple(dict.fromkeys(names))

    def headline(self) -> str:
        line = f"{self.name:<{_NAME_WIDTH}} {self.passed}/{self.total} public checks passed"
        if self.import_error is not None:
            return f"{line}: could not import {self.source}: {self.import_error}"
        missing = self.not_implemented
        if missing and not self.failed and self.passed == 0:
            return f"{line}: not implemented yet ({', '.join(missing)})"
        return line

    def render(self) -> str:
        lines = [self.headline()]
        if self.import_error is not None:
            return lines[0]
        missing = self.not_implemented
        if missing and (self.failed or self.passed):
            count = sum(c.status == "not_implemented" for c in self.checks)
            lines.append(
                f"  … not implemented yet: {', '.join(missing)} ({count} check"
                f"{'s' if count != 1 else ''} waiting on it)"
            )
        shown: set[tuple[str | None, str | None]] = set()
        for check in self.failed:
            if (check.expected, check.got) in shown:
                lines.append(f"  ✗ {check.title} (the same problem as above)")
                continue
            shown.add((check.expected, check.got))
            lines.append(f"  ✗ {check.title}")
            lines.append(f"      expected: {check.expected}")
            lines.append(f"      happened: {check.got}")
            if check.seed is not None:
                lines.append(
                    f"      randomized, seed {check.seed}: replay with"
                    f" `labkit grade {self.name} --seed {check.seed}`"
                )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True, slots=True)
class GradeReport:
    """What ``labkit.grading.grade`` returns: print it, or show it in a notebook cell."""

    target: str
    seed: int
    exercises: tuple[ExerciseResult, ...]

    @property
    def passed(self) -> int:
        return sum(e.passed for e in self.exercises)

    @property
    def total(self) -> int:
        return sum(e.total for e in self.exercises)

    @property
    def all_passed(self) -> bool:
        return bool(self.exercises) and all(e.complete for e in self.exercises)

    def __getitem__(self, name: str) -> ExerciseResult:
        for exercise in self.exercises:
            if exercise.name == name:
                return exercise
        raise KeyError(name)

    def summary(self) -> str:
        complete = sum(e.complete for e in self.exercises)
        return (
            f"{self.passed}/{self.total} public checks passed; {complete} of"
            f" {len(self.exercises)} exercise{'s' if len(self.exercises) != 1 else ''} complete."
            " These are the public checks: passing them is a good sign, not a proof."
        )

    def render(self) -> str:
        lines = [f"labkit grade: {self.target}/ (seed {self.seed})", ""]
        lines.extend(e.render() for e in self.exercises)
        lines += ["", self.summary()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return self.render()

    def _repr_html_(self) -> str:
        rows = []
        for e in self.exercises:
            colour = "#1a7f37" if e.complete else ("#9a6700" if e.passed else "#cf222e")
            note = ""
            if e.import_error is not None:
                note = f"could not import: {e.import_error}"
            elif e.not_implemented:
                note = f"not implemented yet: {', '.join(e.not_implemented)}"
            hints = "".join(
                "<li><b>{}</b><br>expected: {}<br>happened: {}{}</li>".format(
                    html.escape(c.title),
                    html.escape(c.expected or ""),
                    html.escape(c.got or ""),
                    f"<br><i>randomized, seed {c.seed}</i>" if c.seed is not None else "",
                )
                for c in e.failed
            )
            rows.append(
                f"<tr><td><code>{html.escape(e.name)}</code></td>"
                f'<td style="color:{colour};font-weight:bold">{e.passed}/{e.total}</td>'
                f"<td>{html.escape(note)}"
                f"{f'<ul>{hints}</ul>' if hints else ''}</td></tr>"
            )
        return (
            f"<div><p>labkit grade: <code>{html.escape(self.target)}/</code>"
            f" (seed {self.seed})</p>"
            "<table><tr><th>exercise</th><th>public checks passed</th><th>hints</th></tr>"
            + "".join(rows)
            + f"</table><p>{html.escape(self.summary())}</p></div>"
        )
