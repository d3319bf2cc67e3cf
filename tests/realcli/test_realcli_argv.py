"""Argv facts learned from the real CLIs, checked without running them (always runs).

Each case here is something a pinned real CLI rejected or required; the end-to-end tests in
``test_realcli_engine.py`` prove the fixed argv is accepted by the CLI itself.
"""

from __future__ import annotations

import pytest

from clinvk.core.backends.base import APPROVAL_MODES, RunOptions
from clinvk.core.backends.codex import CodexBackend

# codex 0.171 config values for approval_policy that it still loads; "untrusted" makes it
# exit 1 with 'approval_policy = "untrusted" is no longer supported; remove this setting'.
CODEX_ACCEPTED_POLICIES = {'approval_policy="on-request"', 'approval_policy="never"'}


@pytest.mark.parametrize("resume", [None, "01a22367-63c9-7ec3-96ef-840c10c67954"])
@pytest.mark.parametrize("approval", APPROVAL_MODES)
def test_codex_approval_policies_are_ones_codex_0171_accepts(approval, resume):
    argv = CodexBackend().build_invocation(
        RunOptions(prompt="hi", workdir="/tmp", approval_mode=approval, resume_id=resume)).argv
    policies = [argv[i + 1] for i, a in enumerate(argv[:-1])
                if a == "-c" and argv[i + 1].startswith("approval_policy=")]
    assert all(p in CODEX_ACCEPTED_POLICIES for p in policies), argv
    assert not any("untrusted" in a for a in argv)
    assert len(policies) == (0 if approval == "default" else 1)
