"""clinvk.core.config: defaults, file/env/flag layering, validation messages, config set."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
import yaml

from clinvk.core import config as cfgmod
from clinvk.core.config import (
    BUILTIN_ALIASES,
    KNOWN_BACKENDS,
    BackendConfig,
    Config,
    clinvk_home,
    default_config_path,
    env_var_for,
    key_reference,
    load_config,
    resolve_config_path,
    set_config_value,
)
from clinvk.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    """An isolated environment: only CLINVK_HOME, so the real ~/.clinvk is never read."""
    return {"CLINVK_HOME": str(home)}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = write(tmp_path / "config.yaml", text)
    return load_config(path, env=env if env is not None else {})


def error_for(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, env)
    return info.value


# ----------------------------------------------------------------------------- defaults


def test_defaults_without_file(env: dict[str, str]) -> None:
    c = load_config(env=env)
    assert c.path is None
    assert c.default_backend == "claude"
    s = c.server
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert (s.request_timeout_secs, s.read_timeout_secs, s.write_timeout_secs,
            s.idle_timeout_secs, s.backend_idle_timeout_secs) == (300, 30, 300, 120, 0)
    assert (s.rate_limit_enabled, s.rate_limit_rps, s.rate_limit_burst) == (False, 10, 20)
    assert s.rate_limit_storage_uri == "memory://"
    assert s.trusted_proxies == () and s.cors_allowed_origins == ()
    assert s.max_request_body_bytes == 10 * 1024 * 1024
    assert (s.cors_allow_credentials, s.cors_max_age) == (False, 300)
    assert s.allowed_workdir_prefixes == () and s.blocked_workdir_prefixes == ()
    assert (s.metrics_enabled, s.metrics_require_auth) == (False, False)
    assert s.api_keys_gopass_path == ""
    assert (s.allow_unauthenticated_remote, s.allow_dangerous_modes) == (False, False)
    assert s.response_envelope is True
    assert (s.max_concurrent_runs, s.queue_timeout_secs) == (16, 30)
    assert (s.max_output_bytes, s.max_line_bytes) == (16 * 1024 * 1024, 8 * 1024 * 1024)
    assert (s.max_parallel_tasks, s.max_chain_steps, s.max_compare_backends) == (32, 32, 8)
    assert (s.stream_keepalive_secs, s.workers, s.threads) == (15, 1, 32)
    assert (s.log_format, s.log_level, s.graceful_timeout_secs) == ("text", "info", 30)

    assert set(c.backends) == set(KNOWN_BACKENDS)
    for name in KNOWN_BACKENDS:
        b = c.backends[name]
        assert b.command == name
        assert b.model == "" and b.env == {} and b.extra_flags == ()
        assert b.aliases == BUILTIN_ALIASES[name]
        assert b.enabled is True and b.timeout_secs == 0
        assert b.approval_mode == "" and b.sandbox_mode == ""

    u = c.unified_flags
    assert (u.approval_mode, u.sandbox_mode, u.verbose, u.dry_run) == (
        "default", "default", False, False)
    assert (u.max_turns, u.max_tokens, u.command_timeout_secs) == (0, 0, 0)
    assert c.session.auto_resume is False  # no silent auto-resume (docs/configuration.md)
    assert (c.session.retention_days, c.session.default_tags,
            c.session.store_token_usage) == (30, (), True)
    assert (c.output.format, c.output.show_tokens, c.output.show_timing,
            c.output.color) == ("text", False, False, True)
    p = c.parallel
    assert (p.max_workers, p.max_parallel_limit, p.fail_fast, p.aggregate_output) == (
        3, 16, False, True)
    assert set(c.sources.values()) == {"default"}


def test_plain_constructor_matches_loaded_defaults(env: dict[str, str]) -> None:
    assert Config() == load_config(env=env)


def test_config_is_frozen(env: dict[str, str]) -> None:
    c = load_config(env=env)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.server.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.default_backend = "codex"  # type: ignore[misc]


# ----------------------------------------------------------------------- paths and files


def test_clinvk_home_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert clinvk_home({}) == tmp_path / ".clinvk"
    assert clinvk_home({"CLINVK_HOME": "/srv/clinvk"}) == Path("/srv/clinvk")
    assert clinvk_home({"CLINVK_HOME": "~/x"}) == tmp_path / "x"
    assert default_config_path({"CLINVK_HOME": "/srv/clinvk"}) == Path("/srv/clinvk/config.yaml")


def test_default_file_in_clinvk_home_is_read(home: Path, env: dict[str, str]) -> None:
    path = write(home / "config.yaml", "server:\n  port: 9001\n")
    c = load_config(env=env)
    assert c.server.port == 9001
    assert c.path == path
    assert c.sources["server.port"] == f"file:{path}"
    assert c.sources["server.host"] == "default"


def test_clinvk_config_env_and_explicit_path(tmp_path: Path, home: Path,
                                             env: dict[str, str]) -> None:
    write(home / "config.yaml", "server:\n  port: 1111\n")
    via_env = write(tmp_path / "env.yaml", "server:\n  port: 2222\n")
    explicit = write(tmp_path / "explicit.yaml", "server:\n  port: 3333\n")
    env = {**env, "CLINVK_CONFIG": str(via_env)}
    assert load_config(env=env).server.port == 2222
    assert load_config(explicit, env=env).server.port == 3333
    assert resolve_config_path(None, env) == (via_env, True)
    assert resolve_config_path(None, {"CLINVK_HOME": str(home)}) == (home / "config.yaml", False)


def test_missing_explicit_file_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml.*file not found"):
        load_config(missing, env=env)
    with pytest.raises(ConfigError, match=r"nope\.yaml \(from CLINVK_CONFIG\): file not found"):
        load_config(env={**env, "CLINVK_CONFIG": str(missing)})


def test_directory_as_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, env={})


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n",
                                  "server:\n# port: 1\nbackends:\n  claude:\n"])
def test_empty_file_or_empty_sections_mean_defaults(tmp_path: Path, text: str) -> None:
    c = load_text(tmp_path, text)
    assert c == Config()
    assert set(c.sources.values()) == {"default"}


def test_full_file(tmp_path: Path) -> None:
    c = load_text(tmp_path, """
default_backend: codex
server:
  host: 0.0.0.0
  port: 9000
  trusted_proxies: [10.0.0.0/8, 127.0.0.1]
  cors_allowed_origins: ["https://app.example.com"]
  blocked_workdir_prefixes: [/srv/secret]
  log_level: WARNING
  allow_unauthenticated_remote: true
backends:
  claude:
    command: /opt/claude/bin/claude
    model: opus
    env: {ANTHROPIC_BASE_URL: "http://127.0.0.1:9999"}
    aliases: {fast: sonnet, tiny: haiku}
    extra_flags: ["--verbose"]
  gemini:
    enabled: false
unified_flags:
  approval_mode: auto
  max_turns: 5
session:
  default_tags: [ci, nightly]
output:
  format: json
parallel:
  max_workers: 8
""")
    assert c.default_backend == "codex"
    assert c.server.host == "0.0.0.0" and c.server.port == 9000
    assert c.server.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert c.server.log_level == "warning"  # case-normalised
    claude = c.backends["claude"]
    assert claude.command == "/opt/claude/bin/claude"
    assert claude.env == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9999"}
    # aliases are merged over the built-ins, not replacing them
    assert claude.aliases == {**BUILTIN_ALIASES["claude"], "fast": "sonnet", "tiny": "haiku"}
    assert claude.extra_flags == ("--verbose",)
    assert c.backends["gemini"].enabled is False
    assert c.backends["codex"].command == "codex"
    assert c.unified_flags.approval_mode == "auto" and c.unified_flags.max_turns == 5
    assert c.session.default_tags == ("ci", "nightly")
    assert c.output.format == "json" and c.parallel.max_workers == 8


# ----------------------------------------------------------------------- validation


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    err = error_for(tmp_path, "server:\n  port: 8080\n  host: [unclosed\nparallel: {}\n")
    msg = str(err)
    assert str(tmp_path / "config.yaml") in msg
    assert "invalid YAML" in msg
    assert "line 4" in msg or "line 5" in msg


def test_tab_indentation_is_a_yaml_error(tmp_path: Path) -> None:
    err = error_for(tmp_path, "server:\n\tport: 1\n")
    assert "line 2" in str(err) and "invalid YAML" in str(err)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("server:\n  port: '8080'\n", "server.port", "expected an integer, got string '8080'"),
        ("server:\n  port: 8080.5\n", "server.port", "expected an integer, got number 8080.5"),
        ("server:\n  port: true\n", "server.port", "expected an integer, got boolean true"),
        ("server:\n  port: 70000\n", "server.port", "must be between 0 and 65535, got 70000"),
        ("server:\n  rate_limit_enabled: 'yes'\n", "server.rate_limit_enabled",
         "expected a boolean"),
        ("server:\n  trusted_proxies: 10.0.0.1\n", "server.trusted_proxies",
         "expected a list of strings"),
        ("server:\n  trusted_proxies: [10.0.0.1, nonsense]\n", "server.trusted_proxies",
         "item 1 ('nonsense'): must be an IP address or CIDR network"),
        ("server:\n  host: 'not a host!'\n", "server.host", "must be an IP address or a host name"),
        ("server:\n  request_timeout_secs: 0\n", "server.request_timeout_secs", "must be >= 1"),
        ("server:\n  read_timeout_secs: -1\n", "server.read_timeout_secs", "must be >= 0, got -1"),
        ("server:\n  log_format: xml\n", "server.log_format",
         "must be one of 'text', 'json', got 'xml'"),
        ("server:\n  allowed_workdir_prefixes: [relative/dir]\n",
         "server.allowed_workdir_prefixes", "must be an absolute path"),
        ("server:\n  api_keys_gopass_path: 'a b'\n", "server.api_keys_gopass_path",
         "may only contain"),
        ("server:\n  rate_limit_storage_uri: localhost\n", "server.rate_limit_storage_uri",
         "must be a storage URI"),
        ("server:\n  cors_allowed_origins: [example.com]\n", "server.cors_allowed_origins",
         "must be '*' or an origin"),
        ("server:\n  port:\n", "server.port", "no value given"),
        ("default_backend: openai\n", "default_backend",
         "must be one of 'claude', 'codex', 'gemini', got 'openai'"),
        ("unified_flags:\n  approval_mode: yolo\n", "unified_flags.approval_mode",
         "must be one of 'default', 'auto', 'none', 'always', got 'yolo'"),
        ("unified_flags:\n  sandbox_mode: no\n", "unified_flags.sandbox_mode",
         "got boolean false (quote it to make it a string)"),
        ("unified_flags:\n  max_turns: -2\n", "unified_flags.max_turns", "must be >= 0"),
        ("backends:\n  codex:\n    sandbox_mode: sandboxed\n", "backends.codex.sandbox_mode",
         "or '' (not set)"),
        ("backends:\n  claude:\n    command: ''\n", "backends.claude.command", "must not be empty"),
        ("backends:\n  claude:\n    env: {PORT: 1}\n", "backends.claude.env",
         "got integer 1 for 'PORT' (quote it)"),
        ("backends:\n  claude:\n    env: {'BAD-NAME': x}\n", "backends.claude.env",
         "not a valid environment variable name"),
        ("backends:\n  claude:\n    aliases: {fast: ''}\n", "backends.claude.aliases",
         "non-empty model name"),
        ("backends:\n  claude: sonnet\n", "backends.claude", "expected a mapping, got string"),
        ("backends:\n  openai: {}\n", "backends.openai", "unknown backend"),
        ("session:\n  retention_days: -1\n", "session.retention_days", "must be >= 0"),
        ("output:\n  format: yaml\n", "output.format",
         "must be one of 'text', 'json', 'stream-json'"),
        ("parallel:\n  max_workers: 0\n", "parallel.max_workers", "must be >= 1, got 0"),
        ("server: 8080\n", "server", "expected a mapping, got integer 8080"),
        ("server:\n  port: 1\n  port: 2\n", "server.port", "duplicate key"),
    ],
)
def test_validation_errors_name_file_key_and_reason(tmp_path: Path, text: str, key: str,
                                                    reason: str) -> None:
    err = error_for(tmp_path, text)
    msg = str(err)
    assert str(tmp_path / "config.yaml") in msg
    assert f"{key}: " in msg
    assert reason in msg
    assert err.code == "config_error"
    assert err.field == key


def test_error_carries_line_number(tmp_path: Path) -> None:
    msg = str(error_for(tmp_path, "# c\nserver:\n  host: ok\n  port: 99999\n"))
    assert f"{tmp_path / 'config.yaml'}, line 4: server.port: must be between" in msg


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert "top level must be a mapping" in str(error_for(tmp_path, "- a\n- b\n"))


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ("server:\n  prot: 1\n", "server.prot", "server.port"),
        ("sever:\n  port: 1\n", "sever", "server"),
        ("default_backed: claude\n", "default_backed", "default_backend"),
        ("parallel:\n  max_worker: 2\n", "parallel.max_worker", "parallel.max_workers"),
        ("server:\n  fail_fast: true\n", "server.fail_fast", "parallel.fail_fast"),
        ("backends:\n  cluade: {}\n", "backends.cluade", "claude"),
        ("backends:\n  claude:\n    modle: x\n", "backends.claude.modle", "backends.claude.model"),
    ],
)
def test_unknown_key_suggests_closest(tmp_path: Path, text: str, key: str,
                                      suggestion: str) -> None:
    msg = str(error_for(tmp_path, text))
    assert f"{key}: unknown" in msg
    assert f"did you mean '{suggestion}'?" in msg


def test_unknown_key_without_close_match(tmp_path: Path) -> None:
    msg = str(error_for(tmp_path, "server:\n  zzzzzz: 1\n"))
    assert msg.endswith("server.zzzzzz: unknown key")


def test_errors_are_aggregated(tmp_path: Path) -> None:
    err = error_for(
        tmp_path,
        "server:\n  port: x\n  prot: 1\nparallel:\n  max_workers: 0\n",
        env={"CLINVK_SERVER_HOST": "bad host!"},
    )
    msg = str(err)
    assert msg.startswith("invalid configuration (4 errors):")
    assert "line 2: server.port: expected an integer" in msg
    assert "line 3: server.prot: unknown key" in msg
    assert "line 5: parallel.max_workers: must be >= 1" in msg
    assert "environment variable CLINVK_SERVER_HOST: server.host:" in msg
    assert [d["key"] for d in err.details] == [
        "server.port", "server.prot", "parallel.max_workers", "server.host"]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("server:\n  rate_limit_enabled: true\n  rate_limit_rps: 0\n",
         "server.rate_limit_rps", "must be >= 1 when server.rate_limit_enabled is true"),
        ("server:\n  cors_allowed_origins: ['*']\n  cors_allow_credentials: true\n",
         "server.cors_allow_credentials", "cannot be true while"),
        ("server:\n  max_output_bytes: 2048\n", "server.max_line_bytes",
         "must not exceed server.max_output_bytes (2048)"),
        ("parallel:\n  max_workers: 20\n", "parallel.max_workers",
         "must not exceed parallel.max_parallel_limit (16), got 20"),
        ("backends:\n  claude:\n    enabled: false\n", "default_backend",
         "'claude' is disabled"),
    ],
)
def test_cross_key_rules(tmp_path: Path, text: str, key: str, reason: str) -> None:
    msg = str(error_for(tmp_path, text))
    assert f"{key}: {reason}" in msg


def test_cross_rule_skipped_when_an_input_is_already_invalid(tmp_path: Path) -> None:
    err = error_for(tmp_path, "parallel:\n  max_workers: 20\n  max_parallel_limit: 0\n")
    assert [d["key"] for d in err.details] == ["parallel.max_parallel_limit"]


def test_rate_limit_rps_zero_is_fine_when_disabled(tmp_path: Path) -> None:
    assert load_text(tmp_path, "server:\n  rate_limit_rps: 0\n").server.rate_limit_rps == 0


# -------------------------------------------------------------------------- environment


def test_env_overrides_by_section_and_key(tmp_path: Path, env: dict[str, str]) -> None:
    c = load_config(env={
        **env,
        "CLINVK_SERVER_PORT": "9000",
        "CLINVK_SERVER_TRUSTED_PROXIES": "10.0.0.1, 10.1.0.0/16,",
        "CLINVK_SERVER_METRICS_ENABLED": "yes",
        "CLINVK_UNIFIED_FLAGS_MAX_TURNS": "7",
        "CLINVK_BACKENDS_CLAUDE_COMMAND": "/usr/local/bin/claude",
        "CLINVK_BACKENDS_GEMINI_EXTRA_FLAGS": "--debug",
        "CLINVK_DEFAULT_BACKEND": "gemini",
        "CLINVK_SESSION_AUTO_RESUME": "1",
        "CLINVK_OUTPUT_FORMAT": "stream-json",
        "CLINVK_PARALLEL_FAIL_FAST": "on",
    })
    assert c.server.port == 9000
    assert c.server.trusted_proxies == ("10.0.0.1", "10.1.0.0/16")
    assert c.server.metrics_enabled is True
    assert c.unified_flags.max_turns == 7
    assert c.backends["claude"].command == "/usr/local/bin/claude"
    assert c.backends["gemini"].extra_flags == ("--debug",)
    assert c.default_backend == "gemini"
    assert c.session.auto_resume is True
    assert c.output.format == "stream-json"
    assert c.parallel.fail_fast is True
    assert c.sources["server.port"] == "env:CLINVK_SERVER_PORT"
    assert c.sources["default_backend"] == "env:CLINVK_DEFAULT_BACKEND"


@pytest.mark.parametrize(("text", "value"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("0", False), ("No", False), ("off", False),
])
def test_env_booleans(env: dict[str, str], text: str, value: bool) -> None:
    c = load_config(env={**env, "CLINVK_OUTPUT_COLOR": text})
    assert c.output.color is value


def test_env_empty_list(env: dict[str, str]) -> None:
    c = load_config(env={**env, "CLINVK_SESSION_DEFAULT_TAGS": ""})
    assert c.session.default_tags == ()


def test_every_scalar_key_has_a_working_env_override(env: dict[str, str]) -> None:
    for row in key_reference():
        if row["env"] is None:
            assert row["type"] == "map"
            continue
        assert row["env"] == env_var_for(row["key"])
        default = row["default"]
        if isinstance(default, bool):
            text = "true" if default else "false"
        elif isinstance(default, list):
            text = ",".join(default)
        else:
            text = str(default)
        c = load_config(env={**env, row["env"]: text})
        assert c.sources[row["key"]] == f"env:{row['env']}", row["key"]
        got = c.get(row["key"])
        assert (list(got) if isinstance(got, tuple) else got) == default, row["key"]


def test_legacy_env_names(env: dict[str, str]) -> None:
    c = load_config(env={
        **env,
        "CLINVK_BACKEND": "codex",
        "CLINVK_CLAUDE_MODEL": "opus",
        "CLINVK_CODEX_MODEL": "gpt-5.5",
        "CLINVK_GEMINI_MODEL": "gemini-2.5-pro",
        "CLINVK_API_KEYS_GOPASS_PATH": "clinvk/keys",
    })
    assert c.default_backend == "codex"
    assert c.sources["default_backend"] == "env:CLINVK_BACKEND"
    assert c.backends["claude"].model == "opus"
    assert c.backends["codex"].model == "gpt-5.5"
    assert c.backends["gemini"].model == "gemini-2.5-pro"
    assert c.server.api_keys_gopass_path == "clinvk/keys"


def test_canonical_env_name_beats_legacy(env: dict[str, str]) -> None:
    c = load_config(env={**env, "CLINVK_BACKEND": "codex", "CLINVK_DEFAULT_BACKEND": "gemini",
                         "CLINVK_CLAUDE_MODEL": "opus",
                         "CLINVK_BACKENDS_CLAUDE_MODEL": "sonnet"})
    assert c.default_backend == "gemini"
    assert c.backends["claude"].model == "sonnet"
    assert c.sources["backends.claude.model"] == "env:CLINVK_BACKENDS_CLAUDE_MODEL"


def test_non_config_variables_are_left_alone(env: dict[str, str]) -> None:
    c = load_config(env={**env, "CLINVK_API_KEYS": "k1,k2", "CLINVK_DEBUG": "1",
                         "CLINVK_SESSIONS_DB": "/x", "HOME": "/root"})
    assert c == Config()


@pytest.mark.parametrize(("var", "value", "fragment"), [
    ("CLINVK_SERVER_PORT", "eighty", "server.port: expected an integer, got 'eighty'"),
    ("CLINVK_SERVER_PORT", "-1", "server.port: must be between 0 and 65535, got -1"),
    ("CLINVK_OUTPUT_COLOR", "maybe", "output.color: expected a boolean"),
    ("CLINVK_DEFAULT_BACKEND", "gpt", "default_backend: must be one of"),
    ("CLINVK_BACKEND", "gpt", "default_backend: must be one of"),
    ("CLINVK_SERVER_TRUSTED_PROXIES", "1.2.3.4,zz", "server.trusted_proxies: item 1 ('zz')"),
])
def test_bad_env_value_names_the_variable(env: dict[str, str], var: str, value: str,
                                          fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={**env, var: value})
    assert f"environment variable {var}: {fragment}" in str(info.value)


def test_unknown_env_variable_in_a_config_section(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"CLINVK_SERVER_PROT: unknown configuration variable "
                                          r"\(did you mean 'CLINVK_SERVER_PORT'\?\)"):
        load_config(env={**env, "CLINVK_SERVER_PROT": "1"})


def test_map_keys_cannot_come_from_env(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="CLINVK_BACKENDS_CLAUDE_ENV: backends.claude.env: "
                                          "mappings cannot be set from the environment"):
        load_config(env={**env, "CLINVK_BACKENDS_CLAUDE_ENV": "A=b"})


# -------------------------------------------------------------------- precedence & flags


def test_precedence_default_file_env_flag(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "c.yaml",
                 "server:\n  port: 1001\n  host: 0.0.0.0\n  workers: 2\n")
    c = load_config(path, env={**env, "CLINVK_SERVER_PORT": "1002",
                               "CLINVK_SERVER_HOST": "localhost"})
    c = c.with_overrides({"server.port": 1003})
    assert c.server.port == 1003 and c.sources["server.port"] == "flag"
    assert c.server.host == "localhost"
    assert c.sources["server.host"] == "env:CLINVK_SERVER_HOST"
    assert c.server.workers == 2 and c.sources["server.workers"] == f"file:{path}"
    assert c.server.threads == 32 and c.sources["server.threads"] == "default"


def test_with_overrides(env: dict[str, str]) -> None:
    base = load_config(env=env)
    c = base.with_overrides({
        "server.port": "9100",          # strings are parsed like env values
        "server.host": None,            # None = the flag was not given
        "unified_flags.dry_run": True,
        "server.trusted_proxies": ["10.0.0.1"],
        "backends.claude.env.ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "backends.codex.aliases.mini": "gpt-5.4-mini",
    }, source="flag")
    assert c.server.port == 9100 and c.server.host == "127.0.0.1"
    assert c.sources["server.host"] == "default"
    assert c.unified_flags.dry_run is True
    assert c.server.trusted_proxies == ("10.0.0.1",)
    assert c.backends["claude"].env == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:1"}
    assert c.backends["codex"].aliases["mini"] == "gpt-5.4-mini"
    assert c.backends["codex"].aliases["fast"] == BUILTIN_ALIASES["codex"]["fast"]
    assert base.server.port == 8080  # the original is untouched
    assert c.with_overrides({}) == c


def test_with_overrides_validates(env: dict[str, str]) -> None:
    base = load_config(env=env)
    with pytest.raises(ConfigError) as info:
        base.with_overrides({"server.port": 70000, "server.prot": 1, "output.color": "sure"})
    msg = str(info.value)
    assert "command-line option: server.port: must be between 0 and 65535" in msg
    assert "server.prot: unknown key (did you mean 'server.port'?)" in msg
    assert "output.color: expected a boolean" in msg
    with pytest.raises(ConfigError, match="expected an integer, got boolean true"):
        base.with_overrides({"server.port": True})
    with pytest.raises(ConfigError, match=r"parallel.max_workers: must not exceed"):
        base.with_overrides({"parallel.max_workers": 17})


def test_get(env: dict[str, str]) -> None:
    c = load_config(env=env).with_overrides({"backends.claude.env.FOO": "bar"})
    assert c.get("server.port") == 8080
    assert c.get("default_backend") == "claude"
    assert c.get("backends.claude.env.FOO") == "bar"
    assert isinstance(c.get("backends.codex"), BackendConfig)
    assert c.get("server") is c.server
    with pytest.raises(ConfigError, match="did you mean 'server.port'"):
        c.get("server.prot")


# --------------------------------------------------------------- to_dict, describe, masking


def test_to_dict_masks_secret_env_values(env: dict[str, str]) -> None:
    c = load_config(env=env).with_overrides({
        "backends.claude.env": {"ANTHROPIC_API_KEY": "sk-1", "GITHUB_TOKEN": "t",
                                "DB_PASSWORD": "p", "client_secret": "s",
                                "ANTHROPIC_BASE_URL": "http://x", "EMPTY_KEY": ""},
        "server.api_keys_gopass_path": "team/clinvk",
    })
    masked = c.to_dict()["backends"]["claude"]["env"]
    assert masked == {"ANTHROPIC_API_KEY": "****", "GITHUB_TOKEN": "****",
                      "DB_PASSWORD": "****", "client_secret": "****",
                      "ANTHROPIC_BASE_URL": "http://x", "EMPTY_KEY": ""}
    assert c.to_dict()["server"]["api_keys_gopass_path"] == "team/clinvk"
    assert c.to_dict(mask_secrets=False)["backends"]["claude"]["env"]["ANTHROPIC_API_KEY"] == \
        "sk-1"
    rows = {key: value for key, value, _ in c.describe()}
    assert rows["backends.claude.env"]["GITHUB_TOKEN"] == "****"


def test_to_dict_round_trips_through_yaml(tmp_path: Path, env: dict[str, str]) -> None:
    c = load_config(env=env).with_overrides({"server.trusted_proxies": "10.0.0.1",
                                             "backends.codex.env.X": "y"})
    data = c.to_dict(mask_secrets=False)
    assert isinstance(data["server"]["trusted_proxies"], list)
    path = write(tmp_path / "dump.yaml", yaml.safe_dump(data))
    assert load_config(path, env={}) == c


def test_describe_lists_every_key_with_source(tmp_path: Path, env: dict[str, str]) -> None:
    path = write(tmp_path / "c.yaml", "server:\n  port: 1234\n")
    c = load_config(path, env={**env, "CLINVK_SERVER_HOST": "localhost"})
    c = c.with_overrides({"server.workers": 4})
    rows = c.describe()
    assert [r[0] for r in rows] == [r["key"] for r in key_reference()]
    by_key = {k: (v, s) for k, v, s in rows}
    assert by_key["server.port"] == (1234, f"file:{path}")
    assert by_key["server.host"] == ("localhost", "env:CLINVK_SERVER_HOST")
    assert by_key["server.workers"] == (4, "flag")
    assert by_key["server.threads"] == (32, "default")
    assert by_key["server.trusted_proxies"] == ([], "default")


# ------------------------------------------------------------------------- config set

COMMENTED = """\
# clinvk configuration
server:
  # where to listen
  host: 127.0.0.1   # loopback only
  port: 8080        # the port
  trusted_proxies:  # our nginx
    - 10.0.0.1
backends:
  claude:
    model: sonnet  # default model
    env: {ANTHROPIC_BASE_URL: "http://127.0.0.1:1"}
    system_prompt: |
      Be brief.
output:  # nothing here yet
"""


def test_set_preserves_comments(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", COMMENTED)
    set_config_value(path, "server.port", "9000")
    set_config_value(path, "backends.claude.model", "opus")
    set_config_value(path, "server.trusted_proxies", "10.0.0.2,10.0.0.3")
    set_config_value(path, "backends.claude.env.ANTHROPIC_API_KEY", "sk-x")
    set_config_value(path, "backends.claude.system_prompt", "Be brief.\nUse English.")
    set_config_value(path, "output.color", "no")
    set_config_value(path, "server.rate_limit_enabled", "true")        # new key in section
    set_config_value(path, "backends.codex.command", "/opt/codex")     # new backend block
    set_config_value(path, "parallel.max_workers", "4")                # new section
    set_config_value(path, "default_backend", "codex")                 # new top-level key
    text = path.read_text()
    for comment in ("# clinvk configuration", "# where to listen", "# loopback only",
                    "# the port", "# our nginx", "# default model", "# nothing here yet"):
        assert comment in text, comment
    assert "  port: 9000        # the port\n" in text
    c = load_config(path, env={})
    assert c.server.port == 9000
    assert c.server.trusted_proxies == ("10.0.0.2", "10.0.0.3")
    assert c.backends["claude"].model == "opus"
    assert c.backends["claude"].env == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
                                        "ANTHROPIC_API_KEY": "sk-x"}
    assert c.backends["claude"].system_prompt == "Be brief.\nUse English."
    assert c.output.color is False
    assert c.server.rate_limit_enabled is True
    assert c.backends["codex"].command == "/opt/codex"
    assert c.parallel.max_workers == 4
    assert c.default_backend == "codex"
    assert c.server.host == "127.0.0.1"


@pytest.mark.parametrize(("key", "raw", "expected"), [
    ("server.host", "0.0.0.0", "0.0.0.0"),
    ("backends.claude.model", "", ""),
    ("backends.codex.model", "8080", "8080"),   # a string key stays a string
    ("server.cors_allowed_origins", "https://a.example, http://b.example:3000",
     ("https://a.example", "http://b.example:3000")),
    ("server.metrics_enabled", "1", True),
    ("backends.gemini.aliases", "{fast: gemini-2.5-flash-lite}", None),
])
def test_set_round_trip_types(tmp_path: Path, key: str, raw: str, expected: object) -> None:
    path = write(tmp_path / "config.yaml", COMMENTED)
    set_config_value(path, key, raw)
    c = load_config(path, env={})
    if expected is None:
        assert c.backends["gemini"].aliases["fast"] == "gemini-2.5-flash-lite"
        assert c.backends["gemini"].aliases["best"] == BUILTIN_ALIASES["gemini"]["best"]
    else:
        assert c.get(key) == expected
        assert c.sources[key] == f"file:{path}"


def test_set_creates_file_and_directories(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "config.yaml"
    set_config_value(path, "server.port", "9999")
    set_config_value(path, "server.host", "localhost")
    assert load_config(path, env={}).server.port == 9999
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # may hold backend secrets
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]


def test_set_keeps_file_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "server:\n  port: 1\n")
    os.chmod(path, 0o644)
    set_config_value(path, "server.port", "2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(("key", "raw", "fragment"), [
    ("server.port", "abc", "server.port: expected an integer, got 'abc'"),
    ("server.port", "99999", "must be between 0 and 65535"),
    ("server.prot", "1", "server.prot: unknown key (did you mean 'server.port'?)"),
    ("unified_flags.approval_mode", "yolo", "must be one of"),
    ("backends.claude.env.BAD-NAME", "x", "not a valid environment variable name"),
    ("parallel.max_workers", "50", "must not exceed parallel.max_parallel_limit"),
])
def test_set_rejects_bad_values_and_leaves_file_alone(tmp_path: Path, key: str, raw: str,
                                                      fragment: str) -> None:
    path = write(tmp_path / "config.yaml", COMMENTED)
    with pytest.raises(ConfigError) as info:
        set_config_value(path, key, raw)
    assert fragment in str(info.value)
    assert path.read_text() == COMMENTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_set_can_fix_an_invalid_value(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "server:\n  port: eighty  # oops\n")
    with pytest.raises(ConfigError):
        load_config(path, env={})
    set_config_value(path, "server.port", "80")
    assert path.read_text() == "server:\n  port: 80  # oops\n"


def test_set_refuses_unparseable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "server: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        set_config_value(path, "server.port", "1")


def test_set_falls_back_to_rewrite_for_complex_layouts(tmp_path: Path) -> None:
    path = write(tmp_path / "config.yaml", "server: {host: localhost, port: 1}\n")
    set_config_value(path, "server.workers", "3")
    c = load_config(path, env={})
    assert (c.server.host, c.server.port, c.server.workers) == ("localhost", 1, 3)


# ------------------------------------------------------------------------------- docs


def test_docs_list_every_key() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    for row in key_reference():
        key = row["key"]
        if key.startswith("backends."):
            key = "backends.<name>." + key.split(".", 2)[2]
        assert f"`{key}`" in text, key


def test_module_exports() -> None:
    assert cfgmod.KNOWN_BACKENDS == ("claude", "codex", "gemini")
    for name in cfgmod.__all__:
        assert hasattr(cfgmod, name), name
