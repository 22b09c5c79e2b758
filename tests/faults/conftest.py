"""The fault tier prints each fault's figures at the end of the run."""

from __future__ import annotations

import pytest

from tests.faults.harness import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault tier: figures per fault")
    for figures in FIGURES:
        for line in figures.lines():
            terminalreporter.write_line(line)
