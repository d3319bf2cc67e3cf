"""Fake ``claude``, ``codex`` and ``gemini`` executables for the clinvk test suite.

The three scripts in ``tests/fakes/bin/`` call :func:`main` with their CLI name. Each fake
accepts and rejects argv like the real CLI at the recorded version (claude 2.1.197,
codex 0.171.0, gemini 0.61.0) and prints the recorded output shapes
(``tests/fixtures/real_cli/``) byte for byte, except for ids, timestamps, durations and token
counts. There is no model API: the fake itself produces the reply.

Behaviour knobs come from ``FAKE_CLI_<KEY>`` environment variables and can be overridden per
run by a ``FAKE{...json...}`` directive in the prompt text. See ``tests/fakes/README.md``.

Standard library only, and only cheap modules: the fakes start once per test run.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sys
import time

T0 = time.time()

CLAUDE_VERSION = "2.1.197"
CODEX_VERSION = "0.171.0"
GEMINI_VERSION = "0.61.0"

HERE = os.path.dirname(os.path.abspath(__file__))
HELP_DIR = os.path.join(HERE, "help")

DEFAULT_REPLY = "Hello from stub (turn {turn})"
TOOL_COMMAND = "echo hello-from-tool"
TOOL_OUTPUT = "hello-from-tool"
REASONING_TEXT = (
    "**Considering the request**\n\nThe user wants a short answer; I will reply briefly."
)
# A hung or grandchild fake never outlives this many seconds (safety net for leaked processes).
MAX_LIFETIME = float(os.environ.get("FAKE_CLI_MAX_LIFETIME") or 900)

KNOB_KEYS = (
    "reply",
    "delay",
    "wait_for",
    "chunk_delay",
    "pause_after_first",
    "error",
    "exit_code",
    "linger",
    "hang",
    "garbage",
    "big_line",
    "die_midstream",
    "silent",
    "tool",
    "grandchild",
    "escape",
    "ignore_sigterm",
    "pidfile",
    "reasoning",
    "stderr_noise",
    "retries",
)
LOG_ENV_PREFIXES = ("CLINVK_", "ANTHROPIC_", "OPENAI_", "GEMINI_", "IS_SANDBOX")
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
SAFE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# --------------------------------------------------------------------------------------------
# small helpers


class Exit(Exception):
    """Raised to end the run with an exit code (everything has been printed already)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_MUTED = []  # non-empty once the `silent` knob is on: nothing reaches stdout/stderr


def _write(fd: int, text: str) -> None:
    if _MUTED:
        return
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
    while data:
        n = os.write(fd, data)
        data = data[n:]


def out(text: str) -> None:
    _write(1, text)


def err(text: str) -> None:
    _write(2, text)


def dumps(obj) -> str:
    """Compact JSON as printed by node's JSON.stringify / serde_json."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def pretty(obj) -> str:
    """JSON.stringify(obj, null, 2)."""
    return json.dumps(obj, ensure_ascii=False, indent=2)


def uuid4() -> str:
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7() -> str:
    b = bytearray(int(time.time() * 1000).to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hexid(n: int) -> str:
    return os.urandom((n + 1) // 2).hex()[:n]


def iso_now(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def ms_since(t: float) -> int:
    return max(0, int((time.time() - t) * 1000))


def sleep(seconds: float) -> None:
    if seconds and seconds > 0:
        time.sleep(seconds)


def wait_for_file(path: str) -> None:
    """Hold the run until the test creates ``path`` (a gate), bounded by MAX_LIFETIME."""
    deadline = time.time() + MAX_LIFETIME
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)


def stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


def read_stdin(first_data_timeout: float | None = None) -> str | None:
    """Read fd 0 to EOF. None if stdin is closed, a TTY, or (with a timeout) nothing arrived."""
    try:
        os.fstat(0)
    except OSError:
        return None
    if stdin_is_tty():
        return None
    if first_data_timeout is not None:
        try:
            ready, _, _ = select.select([0], [], [], first_data_timeout)
        except (OSError, ValueError):
            ready = [0]
        if not ready:
            return None
    chunks = []
    while True:
        try:
            b = os.read(0, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks).decode("utf-8", "replace")


def chunk_text(text: str) -> list[str]:
    """Split a reply the way the recording stub streamed it: groups of len(words)//3 words."""
    if not text:
        return []
    words = re.findall(r"\S+\s*", text)
    if not words:
        return [text]
    lead = text[: len(text) - len(text.lstrip())]
    words[0] = lead + words[0]
    size = max(1, len(words) // 3)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def tokens(text: str) -> int:
    return len(text) // 4


def in_git_repo(path: str) -> bool:
    p = os.path.abspath(path)
    while True:
        if os.path.exists(os.path.join(p, ".git")):
            return True
        parent = os.path.dirname(p)
        if parent == p:
            return False
        p = parent


def getcwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return os.environ.get("PWD", "/")


def home() -> str:
    return os.path.expanduser("~")


def load_json_file(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# knobs


class Knobs:
    """FAKE_CLI_<KEY> env values, overridden by the first FAKE{...} directive in the prompt."""

    def __init__(self, prompt: str | None = None) -> None:
        self.v: dict = {}
        for key in KNOB_KEYS:
            raw = os.environ.get("FAKE_CLI_" + key.upper())
            if raw is not None and raw != "":
                self.v[key] = raw
        if prompt:
            i = prompt.find("FAKE{")
            if i >= 0:
                try:
                    obj, _ = json.JSONDecoder().raw_decode(prompt, i + 4)
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    self.v.update({str(k).lower(): val for k, val in obj.items()})

    def get(self, key: str, default=None):
        v = self.v.get(key)
        return default if v is None else v

    def flag(self, key: str) -> bool:
        v = self.v.get(key)
        if v is None or v is False:
            return False
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return v != 0
        return str(v).strip().lower() not in ("", "0", "false", "no", "off", "null", "none")

    def num(self, key: str, default: float = 0.0) -> float:
        v = self.v.get(key)
        if v is None or isinstance(v, bool):
            return default
        try:
            return float(v)
        except (TypeError, ValueError):
            return default

    def int(self, key: str, default: int | None = None) -> int | None:
        v = self.v.get(key)
        if v is None or isinstance(v, bool):
            return default
        try:
            return int(float(v))
        except (TypeError, ValueError):
            return default

    def error_status(self) -> int | None:
        status = self.int("error")
        return status if status in (401, 429, 500) else None

    def reply(self, turn: int) -> str | None:
        """The configured reply text (or the big_line filler), None for the CLI's default."""
        big = self.int("big_line")
        if big is not None and big > 0:
            return "x" * big
        r = self.v.get("reply")
        if r is None:
            return None
        return str(r).replace("{turn}", str(turn))


# --------------------------------------------------------------------------------------------
# per-run context: logging, process knobs, stream hooks


_RUNS: list[Run] = []


class Run:
    def __init__(self, cli: str, argv: list[str]) -> None:
        self.cli = cli
        self.argv = argv
        self.logged = False
        self.knobs = Knobs(None)  # env only until the prompt is known
        if self.knobs.flag("silent"):
            _MUTED.append(True)
        self.chunks_seen = 0
        self.stdout_lines = 0
        self.hang_done = False
        _RUNS.append(self)

    def linger(self) -> None:
        """Stay alive a while after the last line, as a CLI shutting down does."""
        seconds = self.knobs.num("linger")
        if seconds:
            sys.stdout.flush()
            sleep(seconds)

    # -- logging ---------------------------------------------------------------------------
    def log(self, stdin_text: str | None) -> None:
        if self.logged:
            return
        self.logged = True
        path = os.environ.get("FAKE_CLI_LOG")
        if not path:
            return
        env = {k: v for k, v in os.environ.items() if k.startswith(LOG_ENV_PREFIXES)}
        rec = {
            "cli": self.cli,
            "argv": self.argv,
            "stdin": stdin_text,
            "cwd": getcwd(),
            "env": env,
            "pid": os.getpid(),
        }
        line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError:
            pass

    def fail(self, text: str, code: int, stdin_text: str | None = None) -> Exit:
        """Print a usage/config error on stderr; return the Exit to raise."""
        self.log(stdin_text)
        if text:
            err(text if text.endswith("\n") else text + "\n")
        return Exit(code)

    # -- process knobs ---------------------------------------------------------------------
    def start(self, prompt: str | None) -> None:
        """Apply the knobs that shape the process itself; called once the prompt is known."""
        k = self.knobs = Knobs(prompt)
        if k.flag("ignore_sigterm"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pidfile = k.get("pidfile")
        if pidfile:
            append_line(str(pidfile), str(os.getpid()))
        if k.flag("grandchild"):
            inherit = str(k.get("grandchild")).strip().lower() == "inherit"
            pid = spawn_grandchild(inherit)
            if pidfile:
                append_line(str(pidfile), str(pid))
        if k.flag("escape"):
            pid = spawn_escapee()
            if pidfile:
                append_line(str(pidfile), str(pid))
        if k.flag("silent"):
            _MUTED.append(True)
            raise Exit(0)
        sleep(k.num("delay"))
        if k.get("wait_for"):
            wait_for_file(str(k.get("wait_for")))

    # -- stream hooks ----------------------------------------------------------------------
    def garbage(self, where: str) -> None:
        if self.knobs.flag("garbage"):
            out(f"FAKE-GARBAGE ({self.cli} {where}) <<< this line is not JSON {{{{ ]]\n")

    def line(self, text: str) -> None:
        """One stdout line (a JSON event or the text reply), with garbage/hang hooks."""
        if self.stdout_lines == 0:
            self.garbage("before-first")
        out(text + "\n")
        self.stdout_lines += 1
        if self.stdout_lines == 1:
            self.garbage("after-first")
            self.hang()

    def final_line(self, text: str) -> None:
        if self.stdout_lines > 0:
            self.garbage("before-last")
        self.line(text)

    def hang(self) -> None:
        if self.knobs.flag("hang") and not self.hang_done:
            self.hang_done = True
            deadline = time.time() + MAX_LIFETIME
            while time.time() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.time())))
            raise Exit(1)

    def before_chunk(self, index: int) -> None:
        if index > 0:
            sleep(self.knobs.num("chunk_delay"))

    def after_chunk(self) -> None:
        """Call after each streamed text chunk became visible (or would have)."""
        self.chunks_seen += 1
        if self.chunks_seen == 1:
            if self.knobs.flag("die_midstream"):
                raise Exit(1)
            sleep(self.knobs.num("pause_after_first"))

    def finish(self, code: int = 0) -> int:
        forced = self.knobs.int("exit_code")
        return forced if forced is not None else code


def append_line(path: str, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError:
        pass


def spawn_escapee() -> int:
    """Fork a sleeper in a session of its own (as the real CLIs start tool shells) with its
    stdio on /dev/null: it is in no process group of ours and outlives the fake."""
    pid = os.fork()
    if pid:
        return pid
    try:  # child
        os.setsid()
        fd = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
        time.sleep(MAX_LIFETIME)
    finally:
        os._exit(0)


def spawn_grandchild(inherit_stdio: bool) -> int:
    """Fork a process that stays in our process group, ignores SIGTERM and sleeps."""
    pid = os.fork()
    if pid:
        return pid
    try:  # child
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not inherit_stdio:
            fd = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(fd, target)
            if fd > 2:
                os.close(fd)
        deadline = time.time() + MAX_LIFETIME
        while time.time() < deadline:
            time.sleep(min(5.0, max(0.0, deadline - time.time())))
    finally:
        os._exit(0)


# --------------------------------------------------------------------------------------------
# session state


class Store:
    """One JSON file per session: <state dir>/<backend>/<session id>.json."""

    def __init__(self, backend: str) -> None:
        base = os.environ.get("FAKE_CLI_STATE_DIR") or os.path.join(home(), ".fake-cli-state")
        self.backend = backend
        self.dir = os.path.join(base, backend)

    def _path(self, sid: str) -> str | None:
        if not sid or not SAFE_ID_RE.match(sid):
            return None
        return os.path.join(self.dir, sid + ".json")

    def load(self, sid: str) -> dict | None:
        p = self._path(sid)
        if not p:
            return None
        s = load_json_file(p)
        if isinstance(s, dict) and s.get("backend") == self.backend:
            return s
        return None

    def exists(self, sid: str) -> bool:
        return self.load(sid) is not None

    def all(self, cwd: str | None = None) -> list[dict]:
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        sessions = []
        for name in names:
            if not name.endswith(".json"):
                continue
            s = load_json_file(os.path.join(self.dir, name))
            if isinstance(s, dict) and s.get("backend") == self.backend:
                if cwd is None or s.get("cwd") == cwd:
                    sessions.append(s)
        sessions.sort(key=lambda s: (s.get("created", 0), s.get("session_id", "")))
        return sessions

    def newest(self, cwd: str | None = None) -> dict | None:
        sessions = self.all(cwd)
        if not sessions:
            return None
        return max(sessions, key=lambda s: s.get("updated", 0))

    def save(self, sess: dict) -> None:
        p = self._path(sess["session_id"])
        if not p:
            return
        os.makedirs(self.dir, exist_ok=True)
        sess["updated"] = time.time()
        sess["updated_at"] = iso_now(sess["updated"])
        tmp = f"{p}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(sess, f, ensure_ascii=False, indent=1)
        os.replace(tmp, p)


def new_session(backend: str, sid: str, cwd: str, turns: list | None = None, **extra) -> dict:
    t = time.time()
    sess = {
        "backend": backend,
        "session_id": sid,
        "cwd": cwd,
        "created": t,
        "created_at": iso_now(t),
        "updated": t,
        "updated_at": iso_now(t),
        "turns": list(turns or []),
    }
    sess.update(extra)
    return sess


def history_chars(sess: dict) -> int:
    n = 0
    for t in sess.get("turns", []):
        n += len(t.get("prompt") or "") + len(t.get("reply") or "")
    return n


def record_turn(sess: dict, prompt: str, reply: str | None, error: int | None = None) -> None:
    turn = {"prompt": prompt, "reply": reply, "at": iso_now()}
    if error is not None:
        turn["error"] = error
    sess.setdefault("turns", []).append(turn)


# --------------------------------------------------------------------------------------------
# commander-style argv parsing (claude)


class UsageError(Exception):
    pass


def _parse_option_specs(specs: list[str]) -> dict:
    table = {}
    for spec in specs:
        names = []
        kind = "b"
        for part in spec.replace(",", " ").split():
            if part.startswith("<"):
                kind = "a" if part.endswith("...>") else "v"
            elif part.startswith("["):
                kind = "o"
            else:
                names.append(part)
        key = next((n for n in names if n.startswith("--")), names[0]).lstrip("-")
        entry = {"key": key, "kind": kind, "display": spec, "names": names, "choices": None}
        for n in names:
            table[n] = entry
    return table


CLAUDE_OPTION_SPECS = [
    "--add-dir <directories...>",
    "--agent <agent>",
    "--agents <json>",
    "--allow-dangerously-skip-permissions",
    "--allowedTools, --allowed-tools <tools...>",
    "--append-system-prompt <prompt>",
    "--ax-screen-reader",
    "--bg, --background",
    "--bare",
    "--betas <betas...>",
    "--brief",
    "--chrome",
    "-c, --continue",
    "--dangerously-skip-permissions",
    "-d, --debug [filter]",
    "--debug-file <path>",
    "--disable-slash-commands",
    "--disallowedTools, --disallowed-tools <tools...>",
    "--effort <level>",
    "--exclude-dynamic-system-prompt-sections",
    "--fallback-model <model>",
    "--file <specs...>",
    "--fork-session",
    "--from-pr [value]",
    "-h, --help",
    "--ide",
    "--include-hook-events",
    "--include-partial-messages",
    "--input-format <format>",
    "--json-schema <schema>",
    "--max-budget-usd <amount>",
    "--mcp-config <configs...>",
    "--model <model>",
    "-n, --name <name>",
    "--no-chrome",
    "--no-session-persistence",
    "--output-format <format>",
    "--permission-mode <mode>",
    "--plugin-dir <path>",
    "--plugin-url <url>",
    "-p, --print",
    "--prompt-suggestions [value]",
    "--remote-control [name]",
    "--remote-control-session-name-prefix <prefix>",
    "--replay-user-messages",
    "-r, --resume [value]",
    "--safe-mode",
    "--session-id <uuid>",
    "--setting-sources <sources>",
    "--settings <file-or-json>",
    "--strict-mcp-config",
    "--system-prompt <prompt>",
    "--tmux",
    "--tools <tools...>",
    "--verbose",
    "-v, --version",
    "-w, --worktree [name]",
]
# accepted but hidden from --help (and from "Did you mean" suggestions)
CLAUDE_HIDDEN_SPECS = [
    "--max-turns <turns>",
    "--system-prompt-file <file>",
    "--append-system-prompt-file <file>",
    "--permission-prompt-tool <tool>",
    "--max-thinking-tokens <tokens>",
    "--mcp-debug",
    "--debug-to-stderr",
]
CLAUDE_OPTIONS = _parse_option_specs(CLAUDE_OPTION_SPECS + CLAUDE_HIDDEN_SPECS)
CLAUDE_OPTIONS["--output-format"]["choices"] = ("text", "json", "stream-json")
CLAUDE_OPTIONS["--input-format"]["choices"] = ("text", "stream-json")
CLAUDE_OPTIONS["--permission-mode"]["choices"] = (
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
)
CLAUDE_OPTIONS["--prompt-suggestions"]["choices"] = (
    "true",
    "false",
    "1",
    "0",
    "yes",
    "no",
    "on",
    "off",
)
CLAUDE_VISIBLE_LONGS = sorted(
    {n for spec in CLAUDE_OPTION_SPECS for n in _parse_option_specs([spec]) if n.startswith("--")}
)


def _edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment), as in commander's suggestSimilar."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for j in range(1, len(b) + 1):
        for i in range(1, len(a) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _commander_suggestion(flag: str) -> str:
    if not flag.startswith("--"):
        return ""
    word = flag[2:]
    best, similar = 3, []
    for cand in (c[2:] for c in CLAUDE_VISIBLE_LONGS):
        if len(cand) <= 1:
            continue
        dist = _edit_distance(word, cand)
        length = max(len(word), len(cand))
        if (length - dist) / length > 0.4:
            if dist < best:
                best, similar = dist, [cand]
            elif dist == best:
                similar.append(cand)
    similar = sorted("--" + s for s in similar)
    if len(similar) > 1:
        return "\n(Did you mean one of " + ", ".join(similar) + "?)"
    if len(similar) == 1:
        return f"\n(Did you mean {similar[0]}?)"
    return ""


def parse_commander(argv: list[str], table: dict) -> tuple[dict, list[str]]:
    opts: dict = {}
    positional: list[str] = []
    args = list(argv)
    i = 0

    def take_value(entry, inline, rest_index):
        """Return (value, next index)."""
        kind = entry["kind"]
        if inline is not None:
            return inline, rest_index
        if kind in ("v", "a"):
            if rest_index >= len(args):
                raise UsageError(f"error: option '{entry['display']}' argument missing")
            return args[rest_index], rest_index + 1
        if kind == "o":
            if rest_index < len(args) and not args[rest_index].startswith("-"):
                return args[rest_index], rest_index + 1
            return True, rest_index
        return True, rest_index

    def store(entry, value):
        key, kind, choices = entry["key"], entry["kind"], entry["choices"]
        if choices and isinstance(value, str) and value not in choices:
            raise UsageError(
                f"error: option '{entry['display']}' argument '{value}' is invalid. "
                f"Allowed choices are {', '.join(choices)}."
            )
        if kind == "a":
            opts.setdefault(key, []).append(value)
        else:
            opts[key] = value

    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            positional.extend(args[i:])
            break
        if a.startswith("--"):
            name, eq, inline = a.partition("=")
            entry = table.get(name if eq else a)
            if entry is None or (eq and entry["kind"] == "b"):
                raise UsageError(f"error: unknown option '{a}'" + _commander_suggestion(a))
            value, i = take_value(entry, inline if eq else None, i)
            store(entry, value)
            if entry["kind"] == "a" and not eq:  # `--opt=value` does not go on swallowing
                while i < len(args) and not args[i].startswith("-"):
                    store(entry, args[i])
                    i += 1
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                flag = "-" + a[j]
                entry = table.get(flag)
                if entry is None:
                    raise UsageError(f"error: unknown option '{flag}'")
                rest = a[j + 1 :]
                if entry["kind"] == "b":
                    store(entry, True)
                    j += 1
                    continue
                value, i = take_value(entry, rest if rest else None, i)
                store(entry, value)
                if entry["kind"] == "a":
                    while i < len(args) and not args[i].startswith("-"):
                        store(entry, args[i])
                        i += 1
                break
        else:
            positional.append(a)
    return opts, positional


# --------------------------------------------------------------------------------------------
# claude


CLAUDE_TOOLS = [
    "Task",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
]
CLAUDE_BARE_TOOLS = ["Bash", "Edit", "Read"]
CLAUDE_SKILLS = [
    "deep-research",
    "update-config",
    "verify",
    "debug",
    "code-review",
    "simplify",
    "batch",
    "fewer-permission-prompts",
    "loop",
    "claude-api",
    "run",
    "run-skill-generator",
]
CLAUDE_SLASH = CLAUDE_SKILLS + [
    "clear",
    "compact",
    "config",
    "context",
    "heapdump",
    "init",
    "reload-skills",
    "review",
    "security-review",
    "usage",
    "insights",
    "goal",
    "team-onboarding",
]
CLAUDE_AGENTS = ["claude", "Explore", "general-purpose", "Plan", "statusline-setup"]
CLAUDE_INPUT_BASE = 3215
CLAUDE_BARE_INPUT_BASE = 201
CLAUDE_NO_PRINT = (
    "Error: Input must be provided either through stdin or as a prompt argument when using --print"
)


def claude_model(arg: str | None, resumed: bool) -> tuple[str, str, int, int, tuple[float, float]]:
    """(modelUsage key, API model id, context window, max output tokens, $/Mtok in/out)."""
    alias = (arg or "").strip()
    if alias in ("", "opus", "default", "best", "opusplan"):
        model = "claude-opus-4-8"
    elif alias == "sonnet":
        model = "claude-sonnet-5"
    elif alias == "haiku":
        model = "claude-haiku-4-5"
    elif alias == "fable":
        model = "claude-fable-5"
    else:
        model = alias
    one_m = model.endswith("[1m]")
    api_model = model[: -len("[1m]")] if one_m else model
    if model == "claude-opus-4-8" and not resumed:
        one_m = True
    key = api_model + "[1m]" if one_m else api_model
    window = 1000000 if one_m else 200000
    max_out = 32000 if re.search(r"-4-[0-5](?:$|[^0-9])", api_model) else 64000
    if "haiku" in api_model:
        prices = (1.0, 5.0)
    elif "sonnet" in api_model:
        prices = (3.0, 15.0)
    else:
        prices = (5.0, 25.0)
    return key, api_model, window, max_out, prices


def claude_project_dir(cwd: str) -> str:
    config = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(home(), ".claude")
    return os.path.join(config, "projects", re.sub(r"[^a-zA-Z0-9]", "-", cwd))


def claude_usage(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "inference_geo": "",
        "iterations": [],
        "speed": "standard",
    }


def claude_error_text(status: int) -> tuple[str, str]:
    """(result text, stream-json error kind) for an API error status."""
    base = os.environ.get("ANTHROPIC_BASE_URL") or ""
    m = re.match(r"^[a-zA-Z]+://([^/]+)", base)
    host = m.group(1) if m else "api.anthropic.com"
    if status == 401:
        return "Invalid API key · Fix external API key", "authentication_failed"
    if status == 429:
        return (
            "API Error: Request rejected (429) · Number of request tokens has exceeded your "
            "per-minute rate limit",
            "rate_limit",
        )
    return (
        "API Error: 500 Internal server error (stub injected). This is a server-side issue, "
        "usually temporary — try again in a moment. If it persists, check your inference "
        f"gateway ({host}).",
        "server_error",
    )


def claude_read_prompt(
    run: Run, prompt_arg: str | None, input_format: str
) -> tuple[str, str | None]:
    """Return (prompt, raw stdin) like `claude -p`: stdin is read when it is not a TTY."""
    if input_format == "stream-json":
        raw = read_stdin()
        texts = []
        for line in (raw or "").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            msg = ev.get("message") if isinstance(ev, dict) else None
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(
                    b.get("text", "")
                    for b in content
                    if isinstance(b, dict) and b.get("type") == "text"
                )
        return "\n".join(t for t in texts if t), raw
    if prompt_arg:
        raw = read_stdin(first_data_timeout=3.0)
        if raw is None and not stdin_is_tty():
            try:
                os.fstat(0)
                err(
                    "Warning: no stdin data received in 3s, proceeding without it. If piping from "
                    "a slow command, redirect stdin explicitly: < /dev/null to skip, or wait "
                    "longer.\n"
                )
            except OSError:
                pass
        return "\n".join(p for p in (prompt_arg, raw) if p), raw
    raw = read_stdin()
    return raw or "", raw


def claude_main(argv: list[str]) -> int:
    run = Run("claude", argv)
    try:
        opts, positional = parse_commander(argv, CLAUDE_OPTIONS)
    except UsageError as e:
        raise run.fail(str(e), 1) from None
    if opts.get("help"):
        run.log(None)
        with open(os.path.join(HELP_DIR, "claude_help.txt"), encoding="utf-8") as f:
            out(f.read())
        return 0
    if opts.get("version"):
        run.log(None)
        out(f"{CLAUDE_VERSION} (Claude Code)\n")
        return 0
    if not opts.get("print"):
        raise run.fail("fake claude: interactive mode is not implemented; use -p/--print", 1)
    fmt = opts.get("output-format") or "text"
    verbose = bool(opts.get("verbose"))
    if opts.get("input-format") == "stream-json" and fmt != "stream-json":
        raise run.fail("Error: --input-format=stream-json requires output-format=stream-json.", 1)
    if fmt == "stream-json" and not verbose:
        raise run.fail(
            "Error: When using --print, --output-format=stream-json requires --verbose", 1
        )
    perm_mode = opts.get("permission-mode") or "default"
    if opts.get("dangerously-skip-permissions"):
        perm_mode = "bypassPermissions"
    if (
        perm_mode == "bypassPermissions"
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and os.environ.get("IS_SANDBOX", "").lower() not in ("1", "true")
    ):
        raise run.fail(
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for "
            "security reasons",
            1,
        )
    cwd = getcwd()
    store = Store("claude")
    want_id = opts.get("session-id")
    resume = opts.get("resume")
    cont = bool(opts.get("continue"))
    fork = bool(opts.get("fork-session"))
    if want_id is not None:
        if not UUID_RE.match(want_id):
            raise run.fail("Error: Invalid session ID. Must be a valid UUID.", 1)
        if (resume is not None or cont) and not fork:
            raise run.fail(
                "Error: --session-id can only be used with --continue or --resume if "
                "--fork-session is also specified.",
                1,
            )
        existing = store.load(want_id)
        if existing is not None and existing.get("cwd") == cwd:
            raise run.fail(f"Error: Session ID {want_id} is already in use.", 1)

    prompt, raw_stdin = claude_read_prompt(
        run, positional[0] if positional else None, opts.get("input-format") or "text"
    )
    run.log(raw_stdin)
    if not prompt.strip():
        raise run.fail(CLAUDE_NO_PRINT, 1, raw_stdin)

    # --- session -------------------------------------------------------------------------
    persist = not opts.get("no-session-persistence")
    resumed = False
    if resume is not None:
        if resume is True or not UUID_RE.match(str(resume)):
            raise run.fail(
                "Error: --resume requires a valid session ID when used with --print. "
                "Usage: claude -p --resume <session-id>",
                1,
            )
        sess = store.load(resume)
        if sess is None or sess.get("cwd") != cwd:
            raise run.fail(f"No conversation found with session ID: {resume}", 1)
        resumed = True
    elif cont:
        sess = store.newest(cwd)
        if sess is None:
            raise run.fail("No conversation found to continue", 1)
        resumed = True
    else:
        sess = new_session("claude", want_id or uuid4(), cwd)
    if resumed and fork:
        sess = new_session("claude", want_id or uuid4(), cwd, sess.get("turns"))

    run.start(prompt)
    k = run.knobs
    turn_no = len(sess["turns"]) + 1
    bare = bool(opts.get("bare"))
    key, api_model, window, max_out, prices = claude_model(opts.get("model"), resumed or fork)
    max_turns = None
    try:
        max_turns = int(opts["max-turns"]) if opts.get("max-turns") is not None else None
    except ValueError:
        max_turns = None
    sid = sess["session_id"]
    partial = fmt == "stream-json" and bool(opts.get("include-partial-messages"))
    collect: list | None = [] if (fmt == "json" and verbose) else None
    t_start = T0

    def emit(ev: dict) -> None:
        if collect is not None:
            collect.append(ev)
        elif fmt == "stream-json":
            run.line(dumps(ev))

    def stream_event(ev: dict, extra: dict | None = None) -> None:
        if partial:
            wrapper = {
                "type": "stream_event",
                "event": ev,
                "session_id": sid,
                "parent_tool_use_id": None,
                "uuid": uuid4(),
            }
            if extra:
                wrapper.update(extra)
            run.line(dumps(wrapper))

    if fmt in ("stream-json",) or collect is not None:
        config_dir = claude_project_dir(cwd)
        emit(
            {
                "type": "system",
                "subtype": "init",
                "cwd": cwd,
                "session_id": sid,
                "tools": CLAUDE_BARE_TOOLS if bare else CLAUDE_TOOLS,
                "mcp_servers": [],
                "model": key,
                "permissionMode": perm_mode,
                "slash_commands": CLAUDE_SLASH,
                "apiKeySource": "ANTHROPIC_API_KEY"
                if os.environ.get("ANTHROPIC_API_KEY")
                else "none",
                "claude_code_version": CLAUDE_VERSION,
                "output_style": "default",
                "agents": CLAUDE_AGENTS,
                "skills": CLAUDE_SKILLS,
                "plugins": [],
                "analytics_disabled": True,
                "product_feedback_disabled": True,
                "uuid": uuid4(),
                "memory_paths": {"auto": os.path.join(config_dir, "memory") + "/"},
                "fast_mode_state": "off",
            }
        )
    if fmt != "stream-json":
        run.hang()
    t_request = time.time()

    # --- API error -------------------------------------------------------------------------
    status = k.error_status()
    if status is not None:
        text, kind = claude_error_text(status)
        if fmt == "stream-json" or collect is not None:
            try:
                retries = int(os.environ.get("CLAUDE_CODE_MAX_RETRIES") or 10)
            except ValueError:
                retries = 10
            for attempt in range(1, retries + 1):
                if partial:
                    run.line(
                        dumps(
                            {
                                "type": "system",
                                "subtype": "status",
                                "status": "requesting",
                                "uuid": uuid4(),
                                "session_id": sid,
                            }
                        )
                    )
                emit(
                    {
                        "type": "system",
                        "subtype": "api_retry",
                        "attempt": attempt,
                        "max_retries": retries,
                        "retry_delay_ms": 500
                        * (2 ** (attempt - 1))
                        * (1 + int(os.urandom(1)[0]) / 1020),
                        "error_status": status,
                        "error": kind,
                        "session_id": sid,
                        "uuid": uuid4(),
                    }
                )
            emit(
                {
                    "type": "assistant",
                    "message": {
                        "id": uuid4(),
                        "container": None,
                        "model": "<synthetic>",
                        "role": "assistant",
                        "stop_details": None,
                        "stop_reason": "stop_sequence",
                        "stop_sequence": "",
                        "type": "message",
                        "usage": {
                            "input_tokens": 0,
                            "output_tokens": 0,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                            "service_tier": None,
                            "cache_creation": {
                                "ephemeral_1h_input_tokens": 0,
                                "ephemeral_5m_input_tokens": 0,
                            },
                            "inference_geo": None,
                            "iterations": None,
                            "speed": None,
                        },
                        "content": [{"type": "text", "text": text}],
                        "context_management": None,
                    },
                    "parent_tool_use_id": None,
                    "session_id": sid,
                    "uuid": uuid4(),
                    "error": kind,
                    "request_id": "req_stub_error",
                }
            )
        result = {
            "type": "result",
            "subtype": "success",
            "is_error": True,
            "api_error_status": status,
            "duration_ms": ms_since(t_start),
            "duration_api_ms": 0,
            "num_turns": 1,
            "result": text,
            "stop_reason": "stop_sequence",
            "session_id": sid,
            "total_cost_usd": 0,
            "usage": claude_usage(0, 0),
            "modelUsage": {},
            "permission_denials": [],
            "terminal_reason": "completed",
            "fast_mode_state": "off",
            "uuid": uuid4(),
        }
        if fmt == "text":
            run.final_line(text)
        elif collect is not None:
            collect.append(result)
            run.final_line(dumps(collect))
        else:
            run.final_line(dumps(result))
        if persist:
            record_turn(sess, prompt, None, status)
            store.save(sess)
        return 1

    # --- normal turn -----------------------------------------------------------------------
    use_tool = k.flag("tool")
    custom = k.reply(turn_no)
    if use_tool:
        reply = custom if custom is not None else f"Tool said: {TOOL_OUTPUT} (turn {turn_no})"
    else:
        reply = custom if custom is not None else DEFAULT_REPLY.replace("{turn}", str(turn_no))
    base = CLAUDE_BARE_INPUT_BASE if bare else CLAUDE_INPUT_BASE
    sys_prompt = (opts.get("system-prompt") or "") + (opts.get("append-system-prompt") or "")
    input1 = base + tokens(sys_prompt) + (history_chars(sess) + len(prompt) + 3) // 4

    first_ttft: list[int] = []

    def message(blocks: list[dict], input_tokens: int, stop_reason: str, request_id: bool) -> int:
        """Stream one model message; return its output tokens."""
        msg_id = "msg_stub_" + hexid(20)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if request_id:
            usage["service_tier"] = "standard"
        req_id = "req_stub_" + hexid(12)
        out_tokens = 0
        if partial:
            run.line(
                dumps(
                    {
                        "type": "system",
                        "subtype": "status",
                        "status": "requesting",
                        "uuid": uuid4(),
                        "session_id": sid,
                    }
                )
            )
            stream_event(
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": api_model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": dict(usage),
                    },
                },
                {"ttft_ms": max(1, ms_since(t_request))},
            )
        for index, block in enumerate(blocks):
            btype = block["type"]
            if btype == "text":
                stream_event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
                for ci, chunk in enumerate(chunk_text(block["text"]) or [""]):
                    run.before_chunk(ci)
                    stream_event(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": chunk},
                        }
                    )
                    if not first_ttft:
                        first_ttft.append(ms_since(t_start))
                    run.after_chunk()
                out_tokens += max(1, tokens(block["text"]))
            elif btype == "thinking":
                stream_event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    }
                )
                for ci, chunk in enumerate(chunk_text(block["thinking"])):
                    run.before_chunk(ci)
                    stream_event(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "thinking_delta", "thinking": chunk},
                        }
                    )
                stream_event(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    }
                )
                out_tokens += max(1, tokens(block["thinking"]))
            else:  # tool_use
                stream_event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block["id"],
                            "name": block["name"],
                            "input": {},
                        },
                    }
                )
                stream_event(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": json.dumps(block["input"], ensure_ascii=False),
                        },
                    }
                )
                out_tokens += 24
            ev = {
                "type": "assistant",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": api_model,
                    "content": [block],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": dict(usage),
                    "context_management": None,
                },
                "parent_tool_use_id": None,
                "session_id": sid,
                "uuid": uuid4(),
            }
            if request_id:
                ev["request_id"] = req_id
            emit(ev)
            stream_event({"type": "content_block_stop", "index": index})
        stream_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": out_tokens},
            }
        )
        stream_event({"type": "message_stop"})
        return out_tokens

    transient = max(0, k.int("retries", 0) or 0)
    if transient and (fmt == "stream-json" or collect is not None):
        try:
            max_retries = int(os.environ.get("CLAUDE_CODE_MAX_RETRIES") or 10)
        except ValueError:
            max_retries = 10
        for attempt in range(1, transient + 1):
            emit(
                {
                    "type": "system",
                    "subtype": "api_retry",
                    "attempt": attempt,
                    "max_retries": max_retries,
                    "retry_delay_ms": 500 * (2 ** (attempt - 1)) * (1 + os.urandom(1)[0] / 1020),
                    "error_status": 500,
                    "error": "server_error",
                    "session_id": sid,
                    "uuid": uuid4(),
                }
            )

    thinking = []
    if k.flag("reasoning"):
        thinking = [
            {"type": "thinking", "thinking": REASONING_TEXT, "signature": "sig_stub_" + hexid(32)}
        ]
    total_in = total_out = 0
    num_turns = 1
    terminal = "completed"
    if use_tool:
        tool_id = "toolu_stub_" + hexid(16)
        blocks = thinking + [
            {"type": "text", "text": "I'll run a command."},
            {
                "type": "tool_use",
                "id": tool_id,
                "name": "Bash",
                "input": {"command": TOOL_COMMAND, "description": "Print a greeting"},
            },
        ]
        input_a = max(1, input1 // 2)
        total_out += message(blocks, input_a, "tool_use", request_id=False)
        total_in += input_a
        emit(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "tool_use_id": tool_id,
                            "type": "tool_result",
                            "content": TOOL_OUTPUT,
                            "is_error": False,
                        }
                    ],
                },
                "parent_tool_use_id": None,
                "session_id": sid,
                "uuid": uuid4(),
                "timestamp": iso_now(),
                "tool_use_result": {
                    "stdout": TOOL_OUTPUT,
                    "stderr": "",
                    "interrupted": False,
                    "isImage": False,
                    "noOutputExpected": False,
                },
            }
        )
        num_turns = 2
        if max_turns is not None and max_turns <= 1:
            terminal = "max_turns"
        else:
            input_b = input1 + 100
            total_out += message(
                [{"type": "text", "text": reply}], input_b, "end_turn", request_id=True
            )
            total_in += input_b
    else:
        total_out += message(
            thinking + [{"type": "text", "text": reply}], input1, "end_turn", request_id=True
        )
        total_in += input1

    cost = round(total_in * prices[0] / 1e6 + total_out * prices[1] / 1e6, 6)
    duration = ms_since(t_start)
    model_usage = {
        key: {
            "inputTokens": total_in,
            "outputTokens": total_out,
            "cacheReadInputTokens": 0,
            "cacheCreationInputTokens": 0,
            "webSearchRequests": 0,
            "costUSD": cost,
            "contextWindow": window,
            "maxOutputTokens": max_out,
        }
    }
    if terminal == "max_turns":
        result = {
            "type": "result",
            "subtype": "error_max_turns",
            "duration_ms": duration,
            "duration_api_ms": ms_since(t_request),
            "is_error": True,
            "num_turns": num_turns,
            "stop_reason": "tool_use",
            "session_id": sid,
            "total_cost_usd": cost,
            "usage": claude_usage(total_in, total_out),
            "modelUsage": model_usage,
            "permission_denials": [],
            "terminal_reason": "max_turns",
            "fast_mode_state": "off",
            "uuid": uuid4(),
            "errors": [f"Reached maximum number of turns ({max_turns})"],
        }
        text_out = f"Error: Reached max turns ({max_turns})"
        code = 1
    else:
        ttft = first_ttft[0] if first_ttft else duration
        t_req_ms = max(0, int((t_request - t_start) * 1000))
        result = {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "api_error_status": None,
            "duration_ms": duration,
            "duration_api_ms": ms_since(t_request),
            "ttft_ms": ttft,
            "ttft_stream_ms": max(0, ttft - 1),
            "time_to_request_ms": t_req_ms,
            "num_turns": num_turns,
            "result": reply,
            "stop_reason": "end_turn",
            "session_id": sid,
            "total_cost_usd": cost,
            "usage": claude_usage(total_in, total_out),
            "modelUsage": model_usage,
            "permission_denials": [],
            "terminal_reason": "completed",
            "fast_mode_state": "off",
            "uuid": uuid4(),
        }
        text_out = reply
        code = 0
    if fmt == "text":
        run.final_line(text_out)
    elif collect is not None:
        collect.append(result)
        run.final_line(dumps(collect))
    else:
        run.final_line(dumps(result))
    if persist:
        record_turn(sess, prompt, reply if code == 0 else None)
        sess["model"] = api_model
        store.save(sess)
    return run.finish(code)


# --------------------------------------------------------------------------------------------
# codex (clap-style parsing)


def _clap(specs: list[tuple]) -> dict:
    table = {}
    for short, long, value, kind, choices, scopes in specs:
        display = (long or short) + (f" <{value}>" if value else "")
        entry = {
            "key": (long or short).lstrip("-"),
            "kind": kind,  # flag | value | append | variadic
            "display": display,
            "choices": choices,
            "scopes": scopes,
        }
        for n in (short, long):
            if n:
                table[n] = entry
    return table


_E, _R, _T = "exec", "resume", "root"
CODEX_OPTIONS = _clap(
    [
        ("-c", "--config", "key=value", "append", None, {_E, _R, _T}),
        (None, "--enable", "FEATURE", "append", None, {_E, _R, _T}),
        (None, "--disable", "FEATURE", "append", None, {_E, _R, _T}),
        (None, "--remote", "ADDR", "value", None, {_E, _R, _T}),
        (None, "--remote-auth-token-env", "ENV_VAR", "value", None, {_E, _R, _T}),
        (None, "--strict-config", None, "flag", None, {_E, _R, _T}),
        ("-i", "--image", "FILE", "variadic", None, {_E, _T}),
        ("-m", "--model", "MODEL", "value", None, {_E, _R, _T}),
        (None, "--oss", None, "flag", None, {_E, _T}),
        (None, "--local-provider", "OSS_PROVIDER", "value", None, {_E, _T}),
        ("-p", "--profile", "CONFIG_PROFILE_V2", "value", None, {_E, _T}),
        (
            "-s",
            "--sandbox",
            "SANDBOX_MODE",
            "value",
            ("read-only", "workspace-write", "danger-full-access"),
            {_E, _T},
        ),
        (None, "--approve-for-me", None, "flag", None, {_E, _T}),
        (None, "--dangerously-bypass-approvals-and-sandbox", None, "flag", None, {_E, _R, _T}),
        (None, "--dangerously-bypass-hook-trust", None, "flag", None, {_E, _R, _T}),
        ("-C", "--cd", "DIR", "value", None, {_E, _T}),
        (None, "--worktree", None, "flag", None, {_E, _R, _T}),
        (None, "--add-dir", "DIR", "append", None, {_E, _T}),
        (None, "--thread-source", "SOURCE", "value", None, {_E, _R}),
        (
            None,
            "--cyber-access-program",
            "PROGRAM",
            "value",
            ("standard", "daybreak_blue", "daybreak_red"),
            {_E, _R},
        ),
        (None, "--skip-git-repo-check", None, "flag", None, {_E, _R}),
        (None, "--trust", None, "flag", None, {_E, _R}),
        (None, "--ephemeral", None, "flag", None, {_E, _R}),
        (None, "--ignore-user-config", None, "flag", None, {_E, _R}),
        (None, "--ignore-rules", None, "flag", None, {_E, _R}),
        (None, "--output-schema", "FILE", "value", None, {_E, _R}),
        (None, "--color", "COLOR", "value", ("always", "never", "auto"), {_E}),
        (None, "--json", None, "flag", None, {_E, _R}),
        ("-o", "--output-last-message", "FILE", "value", None, {_E, _R}),
        (None, "--last", None, "flag", None, {_R}),
        (None, "--all", None, "flag", None, {_R}),
        (
            "-a",
            "--ask-for-approval",
            "APPROVAL_POLICY",
            "value",
            ("untrusted", "on-failure", "on-request", "never"),
            {_T},
        ),
        (None, "--search", None, "flag", None, {_T}),
        (None, "--no-alt-screen", None, "flag", None, {_T}),
        (None, "--no-daemon", None, "flag", None, {_T}),
        ("-h", "--help", None, "flag", None, {_E, _R, _T}),
        ("-V", "--version", None, "flag", None, {_E, _T}),
    ]
)
CODEX_USAGE = {
    _T: "Usage: codex [OPTIONS] [PROMPT]\n       codex [OPTIONS] <COMMAND> [ARGS]",
    _E: "Usage: codex exec [OPTIONS] [PROMPT]\n       codex exec [OPTIONS] <COMMAND> [ARGS]",
    _R: "Usage: codex exec resume [OPTIONS] [SESSION_ID] [PROMPT]",
}
CLAP_MORE = "For more information, try '--help'.\n"
CODEX_INPUT_BASE = 6945
CODEX_HIGH_DEMAND = (
    "We\u2019re currently experiencing high demand, which may cause temporary errors."
)


def clap_unexpected(arg: str, scope: str) -> UsageError:
    tip = f"  tip: to pass '{arg}' as a value, use '-- {arg}'\n\n" if arg.startswith("-") else ""
    return UsageError(
        f"error: unexpected argument '{arg}' found\n\n{tip}{CODEX_USAGE[scope]}\n\n{CLAP_MORE}"
    )


def parse_clap(
    args: list[str], scope: str, opts: dict, stop_at_subcommand: tuple = ()
) -> tuple[list[str], list[str]]:
    """Parse options of one clap command level into opts.

    Returns (positionals, rest): rest is non-empty when a subcommand name was met as the first
    positional (rest[0] is the subcommand).
    """
    positional: list[str] = []
    seen: set = set()
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            positional.extend(args[i:])
            break
        if a.startswith("-") and a != "-":
            if a.startswith("--"):
                name, eq, inline = a.partition("=")
                inline = inline if eq else None
            else:
                name, inline = a[:2], (a[2:] or None)
                if inline is not None and inline.startswith("="):
                    inline = inline[1:]
            entry = CODEX_OPTIONS.get(name)
            if entry is None or scope not in entry["scopes"]:
                raise clap_unexpected(name, scope)
            key, kind = entry["key"], entry["kind"]
            if kind == "flag":
                if inline is not None:
                    raise UsageError(
                        f"error: unexpected value '{inline}' for '{name}' found; "
                        "no more were expected\n\n"
                        f"{CODEX_USAGE[scope]}\n\n{CLAP_MORE}"
                    )
                if key in seen and key not in ("help",):
                    raise UsageError(
                        f"error: the argument '{entry['display']}' "
                        "cannot be used multiple times\n\n"
                        f"{CODEX_USAGE[scope]}\n\n{CLAP_MORE}"
                    )
                seen.add(key)
                opts[key] = True
                continue
            if inline is None:
                if i >= len(args) or (args[i].startswith("-") and args[i] != "-"):
                    pv = ""
                    if entry["choices"]:
                        pv = "  [possible values: " + ", ".join(entry["choices"]) + "]\n"
                    raise UsageError(
                        f"error: a value is required for '{entry['display']}' "
                        "but none was supplied\n"
                        f"{pv}\n{CLAP_MORE}"
                    )
                inline = args[i]
                i += 1
            values = [inline]
            if kind == "variadic":
                while i < len(args) and not (args[i].startswith("-") and args[i] != "-"):
                    values.append(args[i])
                    i += 1
            for v in values:
                if entry["choices"] and v not in entry["choices"]:
                    raise UsageError(
                        f"error: invalid value '{v}' for '{entry['display']}'\n"
                        f"  [possible values: {', '.join(entry['choices'])}]\n\n{CLAP_MORE}"
                    )
            if kind == "value":
                if key in seen:
                    raise UsageError(
                        f"error: the argument '{entry['display']}' "
                        "cannot be used multiple times\n\n"
                        f"{CODEX_USAGE[scope]}\n\n{CLAP_MORE}"
                    )
                seen.add(key)
                opts[key] = values[0]
            else:
                opts.setdefault(key, []).extend(values)
            continue
        if not positional and a in stop_at_subcommand:
            return positional, [a] + args[i:]
        positional.append(a)
    return positional, []


def codex_config(opts: dict) -> dict:
    """The few config values the transcript shows: top-level keys + -c overrides."""
    cfg: dict = {}
    if not opts.get("ignore-user-config"):
        codex_home = os.environ.get("CODEX_HOME") or os.path.join(home(), ".codex")
        try:
            with open(os.path.join(codex_home, "config.toml"), encoding="utf-8") as f:
                text = f.read()
        except OSError:
            text = ""
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line.strip("[]").strip()
                continue
            m = re.match(r'^([A-Za-z0-9_.-]+)\s*=\s*"([^"]*)"', line)
            if m:
                cfg[(section + "." if section else "") + m.group(1)] = m.group(2)
    for item in opts.get("config", []):
        key, eq, value = item.partition("=")
        if not eq:
            continue
        value = value.strip()
        m = re.search(r'base_url\s*=\s*"([^"]*)"', value)
        if value.startswith("{") and m:
            cfg[key.strip() + ".base_url"] = m.group(1)
        cfg[key.strip()] = value.strip('"').strip("'")
    return cfg


def codex_read_prompt(run: Run, prompt: str | None, is_resume: bool) -> tuple[str, str | None]:
    """resolve_prompt of codex exec; may raise Exit."""
    if prompt is not None and prompt != "-":
        if is_resume or stdin_is_tty():
            return prompt, None
        try:
            os.fstat(0)
        except OSError:
            return prompt, None
        err("Reading additional input from stdin...\n")
        raw = read_stdin()
        if raw and raw.strip():
            block = raw if raw.endswith("\n") else raw + "\n"
            return f"{prompt}\n\n<stdin>\n{block}</stdin>", raw
        return prompt, raw
    force = prompt == "-"
    if stdin_is_tty() and not force:
        raise run.fail(
            "No prompt provided. Either specify one as an argument or pipe the prompt into stdin.",
            1,
        )
    if not force:
        err("Reading prompt from stdin...\n")
    raw = read_stdin()
    if not raw or not raw.strip():
        raise run.fail("No prompt provided via stdin.", 1, raw)
    return raw, raw


def codex_main(argv: list[str]) -> int:
    run = Run("codex", argv)
    early = Knobs(None)
    codex_home = os.environ.get("CODEX_HOME") or os.path.join(home(), ".codex")
    warning = (
        "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create "
        'helper binaries under temporary dir "/tmp" '
        f'(codex_home: AbsolutePathBuf("{codex_home}"))\n'
    )
    if early.flag("stderr_noise"):
        err(warning)
    opts: dict = {}
    try:
        pos, rest = parse_clap(argv, _T, opts, stop_at_subcommand=("exec", "e"))
    except UsageError as e:
        raise run.fail(str(e), 2) from None
    if not rest:
        run.log(None)
        if opts.get("help"):
            with open(os.path.join(HELP_DIR, "codex_help.txt"), encoding="utf-8") as f:
                out(f.read())
            return 0
        if opts.get("version"):
            out(f"codex-cli {CODEX_VERSION}\n")
            return 0
        raise run.fail("fake codex: only `codex exec` is implemented (no interactive TUI)", 1)
    # root-level -c/--enable/--disable apply to exec; other root options are TUI-only
    opts = {k: v for k, v in opts.items() if k in ("config", "enable", "disable")}
    try:
        pos, sub = parse_clap(
            rest[1:], _E, opts, stop_at_subcommand=("resume", "fork", "review", "help")
        )
        is_resume = bool(sub) and sub[0] == "resume"
        if sub and sub[0] == "help":
            opts["help"] = True
        elif sub and not is_resume:
            raise run.fail(f"fake codex: `codex exec {sub[0]}` is not implemented", 2)
        if is_resume:
            pos, _ = parse_clap(sub[1:], _R, opts)
            if len(pos) > 2:
                raise clap_unexpected(pos[2], _R)
        elif len(pos) > 1:
            raise clap_unexpected(pos[1], _E)
    except UsageError as e:
        raise run.fail(str(e), 2) from None
    if opts.get("help"):
        run.log(None)
        name = "codex_exec_resume_help.txt" if is_resume else "codex_exec_help.txt"
        with open(os.path.join(HELP_DIR, name), encoding="utf-8") as f:
            out(f.read())
        return 0
    if opts.get("version"):
        run.log(None)
        out(f"codex-cli {CODEX_VERSION}\n")
        return 0

    session_arg = None
    if is_resume:
        session_arg = pos[0] if pos else None
        prompt_arg = pos[1] if len(pos) > 1 else None
        if opts.get("last") and session_arg is not None and prompt_arg is None:
            session_arg, prompt_arg = None, session_arg
    else:
        prompt_arg = pos[0] if pos else None

    cwd = getcwd()
    if opts.get("cd"):
        target = os.path.abspath(os.path.join(cwd, opts["cd"]))
        if not os.path.isdir(target):
            raise run.fail(f"Error: No such file or directory (os error 2): {opts['cd']}", 1)
        cwd = target

    prompt, raw_stdin = codex_read_prompt(run, prompt_arg, is_resume)
    run.log(raw_stdin)
    if not opts.get("skip-git-repo-check") and not in_git_repo(cwd):
        raise run.fail(
            "Not inside a trusted directory and --skip-git-repo-check was not specified.", 1
        )
    if opts.get("output-schema"):
        path = opts["output-schema"]
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except OSError as e:
            raise run.fail(
                f"Failed to read output schema file {path}: {e.strerror} (os error {e.errno})", 1
            ) from None
        except ValueError as e:
            raise run.fail(f"Output schema file {path} is not valid JSON: {e}", 1) from None

    store = Store("codex")
    sess = None
    if is_resume:
        if opts.get("last"):
            sess = store.newest(None if opts.get("all") else cwd)
        elif session_arg is not None:
            sess = store.load(session_arg)
            if sess is None:
                raise run.fail(
                    "Error: thread/resume: thread/resume failed: no rollout found for thread id "
                    f"{session_arg} (code -32600)",
                    1,
                )
    cfg = codex_config(opts)
    if opts.get("dangerously-bypass-approvals-and-sandbox"):
        sandbox = "danger-full-access"
    elif sess is not None:
        sandbox = sess.get("sandbox", "read-only")
    else:
        sandbox = opts.get("sandbox") or cfg.get("sandbox_mode") or "read-only"
    if sess is None:
        sess = new_session("codex", uuid7(), cwd, sandbox=sandbox)
    else:
        cwd = sess.get("cwd", cwd)
    run.start(prompt)
    k = run.knobs
    if k.flag("stderr_noise") and not early.flag("stderr_noise"):
        err(warning)
    json_mode = bool(opts.get("json"))
    sid = sess["session_id"]
    turn_no = len(sess["turns"]) + 1
    model = opts.get("model") or cfg.get("model") or "gpt-5.5"
    provider = cfg.get("model_provider") or "openai"
    effort = cfg.get("model_reasoning_effort") or "none"
    summaries = cfg.get("model_reasoning_summary") or "none"
    persist = not opts.get("ephemeral")
    last_message_path = opts.get("output-last-message")

    def sandbox_label() -> str:
        if sandbox == "workspace-write":
            return "workspace-write [workdir, /tmp, $TMPDIR]"
        return sandbox

    if json_mode:
        run.line(dumps({"type": "thread.started", "thread_id": sid}))
        run.line(dumps({"type": "turn.started"}))
    else:
        err(
            f"OpenAI Codex v{CODEX_VERSION}\n--------\nworkdir: {cwd}\nmodel: {model}\n"
            f"provider: {provider}\napproval: never\nsandbox: {sandbox_label()}\n"
            f"reasoning effort: {effort}\nreasoning summaries: {summaries}\nsession id: {sid}\n"
            f"--------\nuser\n{prompt}\n"
        )
        if k.flag("stderr_noise"):
            err(
                "warning: Codex could not find bubblewrap on PATH. Install bubblewrap with your OS "
                "package manager. See the sandbox prerequisites: "
                "https://developers.openai.com/codex/concepts/sandboxing#prerequisites. Codex will "
                "use the bundled bubblewrap in the meantime.\n"
            )
        run.hang()

    def write_last(text: str | None) -> None:
        if not last_message_path:
            return
        try:
            with open(last_message_path, "w", encoding="utf-8") as f:
                f.write(text or "")
        except OSError as e:
            err(f"Failed to write last message file {last_message_path}: {e}\n")
            return
        if text is None:
            err(f"Warning: no last agent message; wrote empty content to {last_message_path}\n")

    status = k.error_status()
    if status is not None:
        if status == 401:
            key_value = os.environ.get("OPENAI_API_KEY") or "sk-stub"
            base = cfg.get(f"model_providers.{provider}.base_url") or "https://api.openai.com/v1"
            msg = (
                "unexpected status 401 Unauthorized: Incorrect API key provided: "
                f"{key_value[:7]}***. "
                "You can find your API key at https://platform.openai.com/account/api-keys., "
                f"url: {base.rstrip('/')}/responses, request id: req_stub_error"
            )
            reconnects = 5
        elif status == 500:
            msg, reconnects = CODEX_HIGH_DEMAND, 5
        else:
            msg = (
                "exceeded retry limit, last status: 429 Too Many Requests, "
                "request id: req_stub_error"
            )
            reconnects = 0
        for n in range(1, reconnects + 1):
            if json_mode:
                run.line(dumps({"type": "error", "message": f"Reconnecting... {n}/5 ({msg})"}))
            else:
                err(f"ERROR: Reconnecting... {n}/5\n")
        if json_mode:
            run.line(dumps({"type": "error", "message": msg}))
            run.final_line(dumps({"type": "turn.failed", "error": {"message": msg}}))
        else:
            err(f"ERROR: {msg}\nERROR: {msg}\n")
        write_last(None)
        if persist:
            record_turn(sess, prompt, None, status)
            store.save(sess)
        return 1

    for n in range(1, max(0, k.int("retries", 0) or 0) + 1):
        if json_mode:
            run.line(
                dumps({"type": "error", "message": f"Reconnecting... {n}/5 ({CODEX_HIGH_DEMAND})"})
            )
        else:
            err(f"ERROR: Reconnecting... {n}/5\n")

    custom = k.reply(turn_no)
    chunk_id = hexid(6)
    tool_text = (
        f"Chunk ID: {chunk_id}\nWall time: 0.0000 seconds\nProcess exited with code 0\n"
        f"Original token count: 4\nOutput:\n{TOOL_OUTPUT}"
    )
    if custom is not None:
        reply = custom
    elif k.flag("tool"):
        reply = f"Tool said: {tool_text} (turn {turn_no})"
    else:
        reply = DEFAULT_REPLY.replace("{turn}", str(turn_no))
    input_tokens = CODEX_INPUT_BASE + (history_chars(sess) + len(prompt)) // 4
    output_tokens = tokens(reply)
    reasoning_tokens = 0
    item_no = 0
    if k.flag("reasoning"):
        reasoning_tokens = tokens(REASONING_TEXT)
        if json_mode:
            run.line(
                dumps(
                    {
                        "type": "item.completed",
                        "item": {
                            "id": f"item_{item_no}",
                            "type": "reasoning",
                            "text": REASONING_TEXT,
                        },
                    }
                )
            )
        else:
            err(f"thinking\n{REASONING_TEXT}\n")
        item_no += 1
    if k.flag("tool"):
        command = f"/bin/bash -lc '{TOOL_COMMAND}'"
        item = {
            "id": f"item_{item_no}",
            "type": "command_execution",
            "command": command,
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        }
        if json_mode:
            run.line(dumps({"type": "item.started", "item": item}))
            done = dict(item, aggregated_output=TOOL_OUTPUT + "\n", exit_code=0, status="completed")
            run.line(dumps({"type": "item.completed", "item": done}))
        else:
            err(f"exec\n{command} in {cwd}\n succeeded in 5ms:\n{TOOL_OUTPUT}\n")
        item_no += 1
        input_tokens = input_tokens * 2 + tokens(tool_text) + 30
        output_tokens += 34
    chunks = [reply] if k.int("big_line") else (chunk_text(reply) or [""])
    for ci, _chunk in enumerate(chunks):
        run.before_chunk(ci)
        run.after_chunk()
    if json_mode:
        run.line(
            dumps(
                {
                    "type": "item.completed",
                    "item": {"id": f"item_{item_no}", "type": "agent_message", "text": reply},
                }
            )
        )
        run.final_line(
            dumps(
                {
                    "type": "turn.completed",
                    "usage": {
                        "input_tokens": input_tokens,
                        "cached_input_tokens": 0,
                        "cache_write_input_tokens": 0,
                        "output_tokens": output_tokens + reasoning_tokens,
                        "reasoning_output_tokens": reasoning_tokens,
                    },
                }
            )
        )
    else:
        total = input_tokens + output_tokens + reasoning_tokens
        err(f"codex\n{reply}\ntokens used\n{total:,}\n")
        run.final_line(reply)
    write_last(reply)
    if persist:
        record_turn(sess, prompt, reply)
        sess["model"] = model
        store.save(sess)
    return run.finish(0)


# --------------------------------------------------------------------------------------------
# gemini (yargs-style parsing)

GEMINI_OPTIONS = {
    # name: (type, alias, choices)
    "debug": ("boolean", "d", None),
    "model": ("string", "m", None),
    "prompt": ("string", "p", None),
    "prompt-interactive": ("string", "i", None),
    "skip-trust": ("boolean", None, None),
    "worktree": ("string", "w", None),
    "sandbox": ("boolean", "s", None),
    "yolo": ("boolean", "y", None),
    "approval-mode": ("string", None, ("default", "auto_edit", "yolo", "plan")),
    "policy": ("array", None, None),
    "admin-policy": ("array", None, None),
    "acp": ("boolean", None, None),
    "experimental-acp": ("boolean", None, None),
    "allowed-mcp-server-names": ("array", None, None),
    "allowed-tools": ("array", None, None),
    "extensions": ("array", "e", None),
    "list-extensions": ("boolean", "l", None),
    "resume": ("string", "r", None),
    "session-file": ("string", None, None),
    "session-id": ("string", None, None),
    "list-sessions": ("boolean", None, None),
    "delete-session": ("string", None, None),
    "include-directories": ("array", None, None),
    "screen-reader": ("boolean", None, None),
    "output-format": ("string", "o", ("text", "json", "stream-json")),
    "raw-output": ("boolean", None, None),
    "accept-raw-output-risk": ("boolean", None, None),
    "version": ("boolean", "v", None),
    "help": ("boolean", "h", None),
}
GEMINI_ALIASES = {v[1]: k for k, v in GEMINI_OPTIONS.items() if v[1]}
GEMINI_SUBCOMMANDS = ("mcp", "extensions", "extension", "skills", "skill", "hooks", "hook", "gemma")
GEMINI_ROUTER_MODEL = "gemini-3.5-flash-lite"
GEMINI_ROUTED_MODEL = "gemini-3.8-flash"
GEMINI_MAIN_BASE = 7821
GEMINI_ROUTER_BASE = 738
GEMINI_NOISE = (
    "Warning: Basic terminal detected (TERM=dumb). Visual rendering will be limited. For the best "
    "experience, use a terminal emulator with truecolor support.\n"
    "Warning: 256-color support not detected. Using a terminal with at least 256-color support is "
    "recommended for a better visual experience.\n"
)
GEMINI_YOLO = "YOLO mode is enabled. All tool calls will be automatically approved.\n"
GEMINI_RIPGREP = "Ripgrep is not available. Falling back to GrepTool.\n"
GEMINI_STARTUP_NOISE = (
    "[STARTUP] Phase 'cleanup_ops' was started but never ended. Skipping metrics.\n"
    "[STARTUP] Cannot measure phase 'cleanup_ops': start mark 'startup:cleanup_ops:start' not "
    "found (likely cleared by reset).\n"
)
_B = "file:///opt/clis/node_modules/@google/gemini-cli/bundle/chunk-JDPZ4CE3.js"
GEMINI_API_STACK = (
    f"    at throwErrorIfNotOK ({_B}:267833:24)\n"
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n"
    f"    at async {_B}:267596:7\n"
    f"    at async Models.generateContentStream ({_B}:268692:16)\n"
    f"    at async {_B}:311457:19\n"
    f"    at async {_B}:288018:23\n"
    f"    at async retryWithBackoff ({_B}:308039:23)\n"
    f"    at async GeminiChat.makeApiCallAndProcessStream ({_B}:332326:28)\n"
    f"    at async GeminiChat.streamWithRetries ({_B}:332079:29)\n"
    f"    at async Turn.run ({_B}:333001:24) {{\n"
)
GEMINI_QUOTA_STACK = (
    f"    at classifyGoogleError ({_B}:307333:14)\n"
    f"    at retryWithBackoff ({_B}:308062:29)\n"
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n"
    f"    at async GeminiChat.makeApiCallAndProcessStream ({_B}:332326:28)\n"
    f"    at async GeminiChat.streamWithRetries ({_B}:332079:29)\n"
    f"    at async Turn.run ({_B}:333001:24)\n"
    f"    at async GeminiClient.processTurn ({_B}:346675:22)\n"
    f"    at async GeminiClient.sendMessageStream ({_B}:346772:14)\n"
    "    at async file:///opt/clis/node_modules/@google/gemini-cli/bundle/gemini-3HFX2LNT.js:12198:26\n"
    "    at async main "
    "(file:///opt/clis/node_modules/@google/gemini-cli/bundle/gemini-3HFX2LNT.js:17627:5) {\n"
)


GEMINI_500_MESSAGE = "Internal error encountered (stub injected)."
GEMINI_500_BODY = dumps(
    {"error": {"code": 500, "message": GEMINI_500_MESSAGE, "status": "INTERNAL"}}
)


def _kebab(name: str) -> str:
    return re.sub(r"([a-z0-9])([A-Z])", r"\1-\2", name).lower()


def parse_yargs(argv: list[str]) -> tuple[dict, list[str], list[str]]:
    """Return (options, positionals, unknown option names)."""
    opts: dict = {}
    positional: list[str] = []
    unknown: list[str] = []
    i = 0

    def set_opt(name: str, inline: str | None, allow_next: bool) -> None:
        nonlocal i
        typ = GEMINI_OPTIONS[name][0]
        if typ == "boolean":
            if inline is not None:
                opts[name] = inline.lower() != "false"
            elif allow_next and i < len(argv) and argv[i] in ("true", "false"):
                opts[name] = argv[i] == "true"
                i += 1
            else:
                opts[name] = True
        elif typ == "string":
            if inline is not None:
                opts[name] = inline
            elif allow_next and i < len(argv) and not argv[i].startswith("-"):
                opts[name] = argv[i]
                i += 1
            else:
                opts[name] = ""
        else:  # array: greedy
            values = opts.setdefault(name, [])
            if inline is not None:
                values.append(inline)
            while allow_next and i < len(argv) and not argv[i].startswith("-"):
                values.append(argv[i])
                i += 1

    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            positional.extend(argv[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, inline = a[2:].partition("=")
            name = _kebab(name)
            if name in GEMINI_OPTIONS:
                set_opt(name, inline if eq else None, True)
            elif name.startswith("no-") and GEMINI_OPTIONS.get(name[3:], ("",))[0] == "boolean":
                opts[name[3:]] = False
            else:
                unknown.append(name)
                if not eq and i < len(argv) and not argv[i].startswith("-"):
                    i += 1  # yargs swallows the value of an unknown option
        elif a.startswith("-") and len(a) > 1 and not re.match(r"^-\d", a):
            letters = a[1:]
            if "=" in letters:
                letter, _, inline = letters.partition("=")
                name = GEMINI_ALIASES.get(letter)
                if name:
                    set_opt(name, inline, False)
                else:
                    unknown.append(letter)
                continue
            for j, letter in enumerate(letters):
                name = GEMINI_ALIASES.get(letter)
                if name is None:
                    unknown.append(letter)
                    continue
                last = j == len(letters) - 1
                if not last and GEMINI_OPTIONS[name][0] != "boolean":
                    set_opt(name, letters[j + 1 :], False)
                    break
                set_opt(name, None, last)
        else:
            positional.append(a)
    for name, (typ, _alias, _choices) in GEMINI_OPTIONS.items():
        if typ == "array" and name in opts:
            opts[name] = [p.strip() for v in opts[name] for p in v.split(",") if p.strip()]
    return opts, positional, unknown


def gemini_settings() -> dict:
    s = load_json_file(os.path.join(home(), ".gemini", "settings.json"))
    return s if isinstance(s, dict) else {}


def gemini_trusted(cwd: str, opts: dict, settings: dict) -> bool:
    if opts.get("skip-trust") or os.environ.get("GEMINI_CLI_TRUST_WORKSPACE", "").lower() == "true":
        return True
    ft = (settings.get("security") or {}).get("folderTrust") or {}
    if isinstance(ft, dict) and ft.get("enabled") is False:
        return True
    rules = load_json_file(os.path.join(home(), ".gemini", "trustedFolders.json"))
    if not isinstance(rules, dict):
        return False
    trusted = False
    for path, level in rules.items():
        path = os.path.normpath(os.path.expanduser(path))
        if level == "TRUST_PARENT":
            path = os.path.dirname(path)
        if level in ("TRUST_FOLDER", "TRUST_PARENT") and (
            cwd == path or cwd.startswith(path.rstrip("/") + "/")
        ):
            trusted = True
        if level == "DO_NOT_TRUST" and cwd == path:
            return False
    return trusted


def gemini_model_tokens(input_tokens: int, output_tokens: int) -> dict:
    return {
        "input": input_tokens,
        "prompt": input_tokens,
        "candidates": output_tokens,
        "total": input_tokens + output_tokens,
        "cached": 0,
        "thoughts": 0,
        "tool": 0,
    }


def gemini_main(argv: list[str]) -> int:
    run = Run("gemini", argv)
    opts, positional, unknown = parse_yargs(argv)
    with open(os.path.join(HELP_DIR, "gemini_help.txt"), encoding="utf-8") as f:
        help_text = f.read()

    def yargs_fail(msg: str) -> Exit:
        return run.fail(msg + "\n" + help_text, 1)

    if opts.get("help"):
        run.log(None)
        out(help_text)
        return 0
    if opts.get("version"):
        run.log(None)
        out(GEMINI_VERSION + "\n")
        return 0
    if unknown:
        names = ", ".join(unknown)
        raise yargs_fail(
            ("Unknown arguments: " if len(unknown) > 1 else "Unknown argument: ") + names
        )
    for name, (_t, _a, choices) in GEMINI_OPTIONS.items():
        if choices and name in opts and opts[name] not in choices:
            given = opts[name]
            raise yargs_fail(
                "Invalid values:\n  Argument: "
                f'{name}, Given: "{given}", Choices: ' + ", ".join(f'"{c}"' for c in choices)
            )
    if opts.get("prompt") and positional:
        raise yargs_fail("Cannot use both a positional prompt and the --prompt (-p) flag together")
    if opts.get("prompt") and opts.get("prompt-interactive"):
        raise yargs_fail("Cannot use both --prompt (-p) and --prompt-interactive (-i) together")
    if opts.get("yolo") and opts.get("approval-mode"):
        raise yargs_fail(
            "Cannot use both --yolo (-y) and --approval-mode together. "
            "Use --approval-mode=yolo instead."
        )
    if positional and positional[0] in GEMINI_SUBCOMMANDS:
        raise run.fail(f"fake gemini: the `{positional[0]}` subcommand is not implemented", 1)
    if (
        opts.get("prompt-interactive") is not None
        or opts.get("acp")
        or opts.get("experimental-acp")
    ):
        raise run.fail("fake gemini: interactive/ACP mode is not implemented", 1)

    fmt = opts.get("output-format") or "text"
    cwd = getcwd()
    settings = gemini_settings()
    session_seed = uuid4()
    if not gemini_trusted(cwd, opts, settings):
        raise run.fail(
            "\x1b[31mGemini CLI is not running in a trusted directory. To proceed, either use "
            "`--skip-trust`, set the `GEMINI_CLI_TRUST_WORKSPACE=true` environment variable, or "
            "trust this directory in interactive mode. For more details, see "
            "https://geminicli.com/docs/cli/trusted-folders/#headless-and-automated-environments\x1b[0m",
            55,
        )
    if os.environ.get("GOOGLE_GEMINI_BASE_URL") and not (
        (settings.get("security") or {}).get("auth") or {}
    ).get("selectedType"):
        if fmt == "text":
            raise run.fail("Invalid auth method selected.", 41)
        raise run.fail(
            pretty(
                {
                    "session_id": session_seed,
                    "error": {
                        "type": "Error",
                        "message": "Invalid auth method selected.",
                        "code": 41,
                    },
                }
            ),
            41,
        )

    store = Store("gemini")
    chats_dir = os.path.join(home(), ".gemini", "tmp", os.path.basename(cwd) or "root", "chats")
    if opts.get("list-sessions"):
        run.log(None)
        sessions = store.all(cwd)
        if not sessions:
            out("No previous sessions found for this project.\n")
            return 0
        out(f"\nAvailable sessions for this project ({len(sessions)}):\n")
        for n, s in enumerate(sessions, 1):
            first = next((t.get("prompt") for t in s.get("turns", []) if t.get("prompt")), "") or ""
            title = first.strip().splitlines()[0][:80] if first.strip() else "(empty)"
            age = time.time() - s.get("updated", time.time())
            if age < 60:
                when = "Just now"
            elif age < 3600:
                when = f"{int(age // 60)} minutes ago"
            elif age < 86400:
                when = f"{int(age // 3600)} hours ago"
            else:
                when = f"{int(age // 86400)} days ago"
            out(f"  {n}. {title} ({when}) [{s['session_id']}]\n")
        return 0
    if opts.get("delete-session") is not None:
        raise run.fail("fake gemini: --delete-session is not implemented", 1)

    # --- prompt ------------------------------------------------------------------------------
    prompt = opts.get("prompt")
    if prompt is None and positional:
        prompt = " ".join(positional)
    if prompt is None and stdin_is_tty():
        raise run.fail("fake gemini: interactive mode is not implemented; use -p/--prompt", 1)
    raw = read_stdin(first_data_timeout=0.5)
    if raw:
        prompt = f"{raw}\n\n{prompt}" if prompt else raw
    run.log(raw)

    # --- session ---------------------------------------------------------------------------
    resume = opts.get("resume")
    sess = None
    if resume is not None:
        ident = resume or "latest"
        sessions = store.all(cwd)
        if ident == "latest":
            sess = max(sessions, key=lambda s: s.get("updated", 0)) if sessions else None
            if sess is None:
                raise run.fail(
                    "Error resuming session: No previous sessions found for this project.", 42, raw
                )
        elif ident.isdigit():
            n = int(ident)
            sess = sessions[n - 1] if 1 <= n <= len(sessions) else None
        else:
            sess = store.load(ident)
            if sess is not None and sess.get("cwd") != cwd:
                sess = None
        if sess is None:
            raise run.fail(
                f'Error resuming session: Invalid session identifier "{ident}".\n'
                f"  Searched for sessions in {chats_dir}.\n"
                "  Use --list-sessions to see available sessions, then use --resume {number}, "
                "--resume {uuid}, or --resume latest.",
                42,
                raw,
            )
    if not (prompt or "").strip():
        raise run.fail(
            "No input provided via stdin. Input can be provided by piping data into gemini or "
            "using "
            "the --prompt option.",
            42,
            raw,
        )
    if sess is None:
        want = opts.get("session-id")
        if want:
            if store.load(want) is not None:
                raise run.fail(f"Error: Session ID {want} is already in use.", 42, raw)
            sess = new_session("gemini", want, cwd)
        else:
            sess = new_session("gemini", session_seed, cwd)

    run.start(prompt)
    k = run.knobs
    yolo = bool(opts.get("yolo")) or opts.get("approval-mode") == "yolo"
    if k.flag("stderr_noise"):
        err(GEMINI_NOISE)
    if yolo:
        err(GEMINI_YOLO + GEMINI_YOLO)
    if k.flag("stderr_noise"):
        err(GEMINI_RIPGREP)

    sid = sess["session_id"]
    turn_no = len(sess["turns"]) + 1
    explicit_model = opts.get("model") or None
    main_model = explicit_model or GEMINI_ROUTED_MODEL
    hist = history_chars(sess)
    router_in = GEMINI_ROUTER_BASE + (hist + len(prompt)) // 4
    router_out = 19
    t_start = time.time()

    def stream(ev: dict) -> None:
        if fmt == "stream-json":
            ev = {"type": ev.pop("type"), "timestamp": iso_now(), **ev}
            run.line(dumps(ev))

    stream({"type": "init", "session_id": sid, "model": explicit_model or "auto"})
    stream({"type": "message", "role": "user", "content": prompt})
    if fmt != "stream-json":
        run.hang()

    def models_stats(
        main_in: int, main_out: int, main_requests: int, latency: int, errors: int = 0
    ) -> dict:
        models = {}
        if not explicit_model:
            lat = 20 + int(os.urandom(1)[0]) % 15
            toks = gemini_model_tokens(router_in, router_out)
            models[GEMINI_ROUTER_MODEL] = {
                "api": {
                    "totalRequests": 1,
                    "totalErrors": 0,
                    "totalLatencyMs": lat,
                    "errorsByType": {},
                },
                "tokens": toks,
                "roles": {
                    "utility_router": {
                        "totalRequests": 1,
                        "totalErrors": 0,
                        "totalLatencyMs": lat,
                        "tokens": dict(toks),
                    }
                },
            }
        toks = gemini_model_tokens(main_in, main_out)
        models[main_model] = {
            "api": {
                "totalRequests": main_requests,
                "totalErrors": errors,
                "totalLatencyMs": latency,
                "errorsByType": {"ApiError": errors} if errors else {},
            },
            "tokens": toks,
            "roles": {
                "main": {
                    "totalRequests": main_requests,
                    "totalErrors": errors,
                    "totalLatencyMs": latency,
                    "tokens": dict(toks),
                }
            },
        }
        return models

    def stream_stats(main_in: int, main_out: int, tool_calls: int) -> dict:
        per = {}
        if not explicit_model:
            per[GEMINI_ROUTER_MODEL] = {
                "total_tokens": router_in + router_out,
                "input_tokens": router_in,
                "output_tokens": router_out,
                "cached": 0,
                "input": router_in,
            }
        per[main_model] = {
            "total_tokens": main_in + main_out,
            "input_tokens": main_in,
            "output_tokens": main_out,
            "cached": 0,
            "input": main_in,
        }
        tin = sum(m["input_tokens"] for m in per.values())
        tout = sum(m["output_tokens"] for m in per.values())
        return {
            "total_tokens": tin + tout,
            "input_tokens": tin,
            "output_tokens": tout,
            "cached": 0,
            "input": tin,
            "duration_ms": ms_since(t_start),
            "tool_calls": tool_calls,
            "models": per,
        }

    # --- API error ---------------------------------------------------------------------------
    status = k.error_status()
    if status is not None:
        stamp = iso_now().replace(":", "-").replace(".", "-")
        report = f"/tmp/gemini-client-error-Turn.run-sendMessageStream-{stamp}.json"
        if status == 401:
            api_error = (401, "API key not valid. Please pass a valid API key.", "UNAUTHENTICATED")
        elif status == 500:
            api_error = (500, GEMINI_500_MESSAGE, "INTERNAL")
        else:
            api_error = (
                429,
                "Resource has been exhausted (e.g. check quota).",
                "RESOURCE_EXHAUSTED",
            )
        body = dumps(
            {"error": {"code": api_error[0], "message": api_error[1], "status": api_error[2]}}
        )
        quota = "Resource has been exhausted (e.g. check quota)."
        lines = []
        if k.flag("stderr_noise") and status != 500:
            lines.append(
                GEMINI_STARTUP_NOISE if status == 401 else GEMINI_STARTUP_NOISE.splitlines(True)[0]
            )
        if status == 401:
            message = body
        else:
            general = settings.get("general") if isinstance(settings.get("general"), dict) else {}
            try:
                attempts = max(1, int(general.get("maxAttempts", 10)))
            except (TypeError, ValueError):
                attempts = 10
            for n in range(1, attempts):
                lines.append(
                    f"Attempt {n} failed with status {status}. Retrying with backoff... "
                    f"_ApiError: {body}\n" + GEMINI_API_STACK + f"  status: {status}\n}}\n"
                )
            last = body if status == 500 else quota
            lines.append(f"Attempt {attempts} failed: {last}. Max attempts reached\n")
            message = body if status == 500 else quota
        if status == 429:
            lines.append(
                f"Error when talking to Gemini API Full report available at: {report} "
                f"RetryableQuotaError: {quota}\n"
                + GEMINI_QUOTA_STACK
                + "  cause: {\n    code: 429,\n"
                "    message: 'Resource has been exhausted (e.g. check quota).',\n"
                "    details: []\n  },\n  retryDelayMs: undefined,\n  status: 429\n}\n"
            )
        else:
            lines.append(
                f"Error when talking to Gemini API Full report available at: {report} "
                f"_ApiError: {body}\n" + GEMINI_API_STACK + f"  status: {status}\n}}\n"
            )
        err("".join(lines))
        code = 1 if fmt == "text" else status % 256
        if fmt == "text":
            err("An unexpected critical error occurred:[object Object]\n")
        elif fmt == "json":
            err(
                pretty(
                    {
                        "session_id": sid,
                        "error": {"type": "Error", "message": message, "code": status},
                    }
                )
                + "\n"
            )
        else:
            stats = stream_stats(0, 0, 0)
            stats["duration_ms"] = 0
            run.final_line(
                dumps(
                    {
                        "type": "result",
                        "timestamp": iso_now(),
                        "status": "error",
                        "error": {"type": "unknown", "message": f"[API Error: {message}]"},
                        "stats": stats,
                    }
                )
            )
        record_turn(sess, prompt, None, status)
        store.save(sess)
        return code

    # --- normal turn -------------------------------------------------------------------------
    text_parts: list[str] = []

    def emit_chunks(text: str, whole: bool = False) -> None:
        chunks = [text] if whole else (chunk_text(text) or [""])
        for ci, chunk in enumerate(chunks):
            run.before_chunk(ci)
            text_parts.append(chunk)
            if fmt == "stream-json":
                stream({"type": "message", "role": "assistant", "content": chunk, "delta": True})
            elif fmt == "text":
                if run.chunks_seen == 0:
                    run.garbage("before-first")
                out(chunk)
            run.after_chunk()

    custom = k.reply(turn_no)
    use_tool = k.flag("tool")
    main_in = GEMINI_MAIN_BASE + (hist + len(prompt)) // 4
    transient = max(0, k.int("retries", 0) or 0)
    for n in range(1, transient + 1):
        err(
            f"Attempt {n} failed with status 500. Retrying with backoff... _ApiError: "
            f"{GEMINI_500_BODY}\n" + GEMINI_API_STACK + "  status: 500\n}\n"
        )
    main_requests = 1 + transient
    tool_stats = None
    if use_tool:
        emit_chunks("I'll run a tool. ", whole=True)
        t_tool = time.time()
        tool_ms = int(t_tool * 1000)
        if yolo:
            name = "run_shell_command"
            params = {"command": TOOL_COMMAND, "description": "print greeting"}
            display = TOOL_OUTPUT
            llm = (
                f"<untrusted_context>\nOutput: {TOOL_OUTPUT}\n"
                f"Process Group PGID: {os.getpgrp()}\n</untrusted_context>"
            )
        else:
            name = "list_directory"
            params = {"dir_path": "."}
            try:
                entries = sorted(os.listdir(cwd))
            except OSError:
                entries = []
            if entries:
                display = f"Listed {len(entries)} item(s)."
                listing = "\n".join(
                    ("[DIR] " if os.path.isdir(os.path.join(cwd, e)) else "") + e for e in entries
                )
                llm = f"Directory listing for {cwd}:\n{listing}"
            else:
                display = "Directory is empty."
                llm = f"Directory {cwd} is empty."
        tool_id = f"{name}__{name}_{tool_ms}_0"
        stream({"type": "tool_use", "tool_name": name, "tool_id": tool_id, "parameters": params})
        stream({"type": "tool_result", "tool_id": tool_id, "status": "success", "output": display})
        duration = max(1, ms_since(t_tool))
        decisions = {"accept": 1, "reject": 0, "modify": 0, "auto_accept": 0}
        tool_stats = {
            "totalCalls": 1,
            "totalSuccess": 1,
            "totalFail": 0,
            "totalDurationMs": duration,
            "totalDecisions": dict(decisions),
            "byName": {
                name: {
                    "count": 1,
                    "success": 1,
                    "fail": 0,
                    "durationMs": duration,
                    "decisions": dict(decisions),
                }
            },
        }
        reply = (
            custom
            if custom is not None
            else (
                "Tool said: "
                + json.dumps({"output": llm}, ensure_ascii=False)
                + f" (turn {turn_no})"
            )
        )
        main_in = main_in * 2 + tokens(llm) + 100
        main_requests = 2
    else:
        reply = custom if custom is not None else DEFAULT_REPLY.replace("{turn}", str(turn_no))
    emit_chunks(reply, whole=bool(k.int("big_line")))
    full = "".join(text_parts)
    main_out = max(1, tokens(full))
    latency = max(1, ms_since(t_start))
    code = run.finish(0)
    if fmt == "text":
        out("\n")
        run.garbage("after-last")
    elif fmt == "json":
        if tool_stats is None:
            tool_stats = {
                "totalCalls": 0,
                "totalSuccess": 0,
                "totalFail": 0,
                "totalDurationMs": 0,
                "totalDecisions": {"accept": 0, "reject": 0, "modify": 0, "auto_accept": 0},
                "byName": {},
            }
        obj = {
            "session_id": sid,
            "response": reply,  # only the text after the last tool call
            "stats": {
                "models": models_stats(main_in, main_out, main_requests, latency, transient),
                "tools": tool_stats,
                "files": {"totalLinesAdded": 0, "totalLinesRemoved": 0},
            },
        }
        run.garbage("before-first")
        out(pretty(obj))
    else:
        run.final_line(
            dumps(
                {
                    "type": "result",
                    "timestamp": iso_now(),
                    "status": "success",
                    "stats": stream_stats(main_in, main_out, 1 if use_tool else 0),
                }
            )
        )
    record_turn(sess, prompt, full)
    sess["model"] = main_model
    store.save(sess)
    return code


# --------------------------------------------------------------------------------------------

MAINS = {"claude": claude_main, "codex": codex_main, "gemini": gemini_main}


def main(cli: str, argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return MAINS[cli](argv)
    except Exit as e:
        return e.code
    finally:
        if _RUNS:
            _RUNS[-1].linger()
