"""Workdir policy: the built-in system prefixes and configured blocked prefixes."""

from __future__ import annotations

import os

import pytest

from clinvk.core import policy
from clinvk.core.errors import PolicyViolation


@pytest.mark.parametrize("prefix", policy.BUILTIN_BLOCKED_PREFIXES)
def test_builtin_prefixes_still_block_their_literal_and_resolved_paths(prefix: str) -> None:
    for path in {prefix, os.path.realpath(prefix)}:
        for candidate in (path, path + "/sub/dir"):
            with pytest.raises(PolicyViolation):
                policy.check_workdir(candidate)


def test_a_directory_outside_every_prefix_passes(tmp_path) -> None:
    policy.check_workdir(str(tmp_path.resolve()))


def test_configured_prefixes_are_resolved_on_every_check(tmp_path) -> None:
    """Only the built-in system prefixes are resolved once; a configured symlink that is
    re-pointed takes effect at the next check."""
    a, b, link = tmp_path / "a", tmp_path / "b", tmp_path / "link"
    a.mkdir()
    b.mkdir()
    link.symlink_to(a)
    with pytest.raises(PolicyViolation):
        policy.check_workdir(str(a), blocked=[str(link)])
    policy.check_workdir(str(b), blocked=[str(link)])
    link.unlink()
    link.symlink_to(b)
    policy.check_workdir(str(a), blocked=[str(link)])
    with pytest.raises(PolicyViolation):
        policy.check_workdir(str(b), blocked=[str(link)])
