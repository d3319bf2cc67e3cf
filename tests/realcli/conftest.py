"""Fixtures of the real-CLI suite: install the pinned CLIs, start stubs, isolate every run.

The suite is part of the normal ``python3 -m pytest``. It installs the pinned CLIs from npm
into a cache (see ``installer.py``) on first use. When the npm registry cannot be reached
the tests are skipped with npm's error as the reason, and a banner repeats it at the end of
the run; ``CLINVK_REALCLI_REQUIRED=1`` turns that skip into a failure, and so does
``CI=true`` (CI must prove compatibility with the pinned CLIs, as it must run the real
redis and PostgreSQL); ``CLINVK_REALCLI_SKIP=1`` skips the suite on purpose.

Every test gets a fresh :class:`World`: three stub model APIs on loopback, one sandbox per
backend (temp HOME, CODEX_HOME, TMPDIR, config files), a clinvk config pointing each backend
at the installed binary with the sandbox's environment, a session store and an engine. At
teardown the stubs are stopped and no process started from the world may be left.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realcli import installer
from realcli.harness import World
from realcli.sandbox import clean_environ

_problems: list[str] = []  # reasons the suite was skipped, repeated in the terminal summary
_details: list[str] = []  # npm's output behind them
_SKIP_PREFIX = "real-CLI suite skipped: "
_DETAIL = "realcli-skip-detail"  # the user property that carries a detail to the banner
# The environment as pytest got it: npm needs the machine's registry/proxy settings, which
# the CLIs themselves must not see (see _scrubbed_environ).
_ORIGINAL_ENVIRON = dict(os.environ)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realcli: runs the real claude/codex/gemini CLIs against local stub APIs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realcli)
            # The first test may include the npm install (about 30 s, longer on slow links).
            item.add_marker(pytest.mark.timeout(300))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[pytest.TestReport]:
    """npm's output behind a skip travels with the skip's report: under pytest-xdist the
    banner is written by the controller, which sees the workers' reports and nothing else."""
    report = yield
    if report.skipped and _details:
        report.user_properties.extend((_DETAIL, detail) for detail in dict.fromkeys(_details))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the banner from the reports (the controller's and a serial run's view alike)."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2]).removeprefix("Skipped: ")
    if reason.startswith(_SKIP_PREFIX) and reason not in _problems:
        # One detail per reason: each xdist worker that tried npm sends its own copy.
        _problems.append(reason)
        _details.extend([value for name, value in report.user_properties
                         if name == _DETAIL][:1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _problems:
        return
    terminalreporter.section("REAL CLI SUITE SKIPPED", sep="!", red=True, bold=True)
    for reason in dict.fromkeys(_problems):
        terminalreporter.write_line(reason, red=True)
    for detail in dict.fromkeys(_details):
        terminalreporter.write_line(detail)
    terminalreporter.write_line(
        "The real claude/codex/gemini CLIs were NOT exercised. Set CLINVK_REALCLI_REQUIRED=1 "
        "to make this a failure.", red=True)


def _skip(reason: str, *, asked: bool = False) -> None:
    """Skip the suite for ``reason``, or fail where it is required. A skip someone
    ``asked`` for (``CLINVK_REALCLI_SKIP``) is not refused by CI, only by REQUIRED."""
    message = _SKIP_PREFIX + reason
    if _ORIGINAL_ENVIRON.get("CLINVK_REALCLI_REQUIRED", "").strip() in ("1", "true", "yes"):
        pytest.fail(message + " (CLINVK_REALCLI_REQUIRED is set)", pytrace=False)
    if not asked and _ORIGINAL_ENVIRON.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cli_binaries() -> dict[str, Path]:
    """Backend name -> path of the installed pinned CLI (installing it on first use)."""
    if _ORIGINAL_ENVIRON.get("CLINVK_REALCLI_SKIP", "").strip() in ("1", "true", "yes"):
        _skip("CLINVK_REALCLI_SKIP is set", asked=True)
    if not sys.platform.startswith("linux"):
        _skip(f"it needs Linux (/proc for the process checks), not {sys.platform}")
    if _problems:
        pytest.skip(_problems[0])
    try:
        return installer.install(log=lambda msg: print(f"[realcli] {msg}", flush=True),
                                 env=_ORIGINAL_ENVIRON)
    except installer.InstallError as exc:
        if exc.detail:
            _details.append(exc.detail)
        if exc.unreachable:
            _skip(f"cannot install the pinned CLIs from npm: {exc}")
        pytest.fail(f"installing the pinned CLIs failed: {exc}\n{exc.detail}", pytrace=False)
    raise AssertionError("unreachable")


@pytest.fixture(scope="module", autouse=True)
def _scrubbed_environ() -> Iterator[None]:
    """No inherited variable may point a CLI at a real API or another config dir.

    Module scope: the environment is restored before tests outside this directory run.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in set(os.environ) - set(clean_environ()):
            mp.delenv(name)
        yield


@pytest.fixture
def world(cli_binaries: dict[str, Path], tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, cli_binaries)
    try:
        yield w
    finally:
        problems = w.close_and_check()
        assert not problems, "\n".join(problems)
