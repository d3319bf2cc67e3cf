"""What the OpenAI- and Anthropic-compatible dialects share in translating a request.

The request → run → response path itself is :mod:`clinvk.server.dialect`.

* **Model → backend** (:func:`resolve_model`): ``backend`` or ``backend/model``
  (``codex/gpt-5.5``; vendor names work before the slash too: ``openai/gpt-5.5``), the
  configured aliases (``fast``, ``balanced``, ``best``, ... on the default backend), then
  vendor model names: ``claude*``/``sonnet*``/``opus*``/``haiku*`` → claude,
  ``gpt*``/``chatgpt*``/``o<digit>*``/``codex*`` → codex, ``gemini*`` → gemini. Anything
  else is unknown (404 in the vendor's format).
* **Conversation → prompt** (:func:`render_prompt`): system/developer text becomes the
  system prompt; a single user message is sent verbatim; earlier turns are rendered as a
  transcript in front of the last user message (format in docs/openai.md).
* **SSE** framing (:func:`sse`) and assistant text as it streams (:class:`TextJoiner`).
* **OpenAPI**: the vendor's error body on every documented failure (:func:`document_errors`).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import ValidationError, fields

from clinvk.core.errors import InvalidRequest
from clinvk.core.events import Event
from clinvk.server.apidoc import error_responses
from clinvk.server.errors import ApiError, ApiException
from clinvk.server.gateway import current_gateway

# marshmallow error messages shared by both vendors' schemas.
REQUIRED = {"required": "is required", "null": "is required and must not be null"}

# Vendor model-name families (matched on the lower-cased name).
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(claude|anthropic|sonnet|opus|haiku)"), "claude"),
    (re.compile(r"^(gpt|chatgpt|codex|o\d)"), "codex"),
    (re.compile(r"^gemini"), "gemini"),
)
# Vendor names accepted before a slash, as routers such as OpenRouter/LiteLLM write them.
_VENDOR_PREFIXES = {"anthropic": "claude", "openai": "codex", "google": "gemini"}

MODEL_HELP = (
    "use a backend name (claude, codex, gemini), backend/model (e.g. codex/gpt-5.5), an alias "
    "(fast, balanced, best) or a vendor model name (claude-*, gpt-*, o*, gemini-*); "
    "GET /models lists them")


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelTarget:
    """Where a request's ``model`` sends the run."""

    requested: str
    backend: str
    model: str | None  # what the engine gets (alias or name); None = backend default


def model_field() -> fields.String:
    """The ``model`` field both vendor dialects take: a backend, backend/model, an alias or a
    vendor model name."""
    return fields.String(required=True, validate=not_blank, error_messages=REQUIRED,
                         metadata={"description": "claude, codex, gemini, backend/model, an "
                                   "alias (fast, balanced, best) or a vendor model name "
                                   "(claude-*, gpt-*, o*, gemini-*)."})


def not_blank(value: str) -> None:
    """marshmallow validator: a string field that must say something."""
    if not value.strip():
        raise ValidationError("must not be empty")


def model_not_found(model: str, reason: str = "") -> ApiException:
    text = f"The model {model!r} does not exist on this gateway"
    text += f" ({reason}); " if reason else "; "
    return ApiException(ApiError(404, "model_not_found", text + MODEL_HELP, field="model"))


def routes_unknown_models() -> bool:
    """Whether a model naming no backend or alias runs on the default backend
    (``server.unknown_model``; ``auto`` follows the response mode)."""
    srv = current_gateway().config.server
    if srv.unknown_model == "auto":
        return not srv.response_envelope
    return srv.unknown_model == "default_backend"


def resolve_model(model: Any, *, route_unknown: bool | None = None) -> ModelTarget:
    """Map a vendor-style ``model`` to a backend and the model it is told to use.

    A name that matches no backend, alias or model family goes to the default backend with
    the name passed through as ``--model`` when ``route_unknown`` (by default:
    :func:`routes_unknown_models`), and is a 404 otherwise.
    """
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model is required: " + MODEL_HELP, field="model")
    requested = model.strip()
    engine = current_gateway().engine
    registry = engine.registry
    lowered = requested.lower()
    if "/" in requested:
        head, tail = requested.split("/", 1)
        head = head.strip().lower()
        name = head if head in registry else _VENDOR_PREFIXES.get(head)
        if name is None or name not in registry:
            raise model_not_found(requested, f"{head!r} is not an enabled backend")
        tail = tail.strip()
        return ModelTarget(requested, name, tail or None)
    if lowered in registry:
        # A bare backend name: the backend's default model, i.e. backends.<name>.model when
        # configured, else no --model flag at all. (These APIs require a model, so this is
        # the only way for their clients to ask for "the default" as native clients do by
        # leaving model out.)
        return ModelTarget(requested, lowered, None)
    alias_backend = _alias_backend(requested)
    if alias_backend is not None:
        return ModelTarget(requested, alias_backend, requested)
    for pattern, name in _FAMILIES:
        if pattern.match(lowered):
            if name not in registry:
                raise model_not_found(requested, f"it belongs to backend {name}, which is "
                                      "disabled")
            return ModelTarget(requested, name, requested)
    default = current_gateway().config.default_backend
    if (routes_unknown_models() if route_unknown is None else route_unknown) \
            and default in registry:
        return ModelTarget(requested, default, requested)
    raise model_not_found(requested)


def _alias_backend(alias: str) -> str | None:
    """The backend an alias resolves on: the default backend first, then the first that has it."""
    gw = current_gateway()
    registry = gw.engine.registry
    default = gw.config.default_backend
    ordered = [default] if default in registry else []
    ordered += [n for n in registry.names() if n != default]
    for name in ordered:
        if alias in registry.get(name).aliases:
            return name
    return None


@dataclass(frozen=True)
class ModelEntry:
    id: str
    backend: str
    vendor: str
    description: str


def model_catalog() -> list[ModelEntry]:
    """Every model id this gateway answers to, in a stable order.

    Backend names (their default model), ``backend/alias`` for every alias of every
    backend, and the bare aliases of the default backend.
    """
    gw = current_gateway()
    registry = gw.engine.registry
    entries: list[ModelEntry] = []
    for backend in registry:
        default = backend.default_model or "the CLI's own default model"
        entries.append(ModelEntry(backend.name, backend.name, backend.vendor,
                                  f"{backend.display_name}, {default}"))
    for backend in registry:
        for alias, target in backend.aliases.items():
            entries.append(ModelEntry(f"{backend.name}/{alias}", backend.name, backend.vendor,
                                      f"{backend.display_name}, {target}"))
    seen = {e.id for e in entries}
    default = gw.config.default_backend
    if default in registry:
        backend = registry.get(default)
        for alias, target in backend.aliases.items():
            if alias not in seen:
                entries.append(ModelEntry(alias, backend.name, backend.vendor,
                                          f"{backend.display_name}, {target}"))
    return entries


def find_model(model_id: str) -> ModelEntry:
    """A listed model, or any model name the gateway would route (404 otherwise)."""
    for entry in model_catalog():
        if entry.id == model_id:
            return entry
    target = resolve_model(model_id, route_unknown=False)  # a catalogue lists no guesses
    backend = current_gateway().engine.registry.get(target.backend)
    return ModelEntry(model_id, backend.name, backend.vendor,
                      f"{backend.display_name}, {target.model or 'default model'}")


def server_started_epoch() -> int:
    """Unix time the serving process started (a stable `created` for model objects)."""
    gw = current_gateway()
    return int(time.time() - (time.monotonic() - gw.started))


# --------------------------------------------------------------------------- conversations


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str
    field: str  # where it came from, e.g. messages[3].content


TRANSCRIPT_INTRO = (
    "This conversation continues from earlier turns, reproduced below oldest first "
    "between <conversation> tags. Reply to the new user message that follows them.")


def render_prompt(turns: list[Turn]) -> str:
    """The prompt for the CLI: the last user message, preceded by a transcript if any."""
    if not turns:
        raise InvalidRequest("messages must contain at least one user message",
                             field="messages")
    last = turns[-1]
    if last.role != "user":
        raise InvalidRequest(
            "the last message must come from the user: continuing a partial assistant "
            "message (prefill) is not supported by the agent CLIs", field="messages")
    if not last.text.strip():
        raise InvalidRequest("the last user message must not be empty", field=last.field)
    if len(turns) == 1:
        return last.text
    parts = [TRANSCRIPT_INTRO, "", "<conversation>"]
    for turn in turns[:-1]:
        parts += [f"<{turn.role}>", turn.text, f"</{turn.role}>"]
    parts += ["</conversation>", "", last.text]
    return "\n".join(parts)


# Reads one part of a message's content (``part``, found at ``here``): its text, None when
# the part is skipped, or an InvalidRequest naming the part when the dialect refuses it.
PartReader = Callable[[dict[str, Any], str], str | None]


def text_of_parts(content: Any, where: str, noun: str, read_part: PartReader) -> str:
    """A message's content as text: a string as is, or the texts of a list of parts (each an
    object with a ``type``; the dialect's ``noun`` for them: "content part") joined by lines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of {noun}s", field=where)
    texts = []
    for j, part in enumerate(content):
        here = f"{where}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"{here} must be a {noun} object", field=here)
        text = read_part(part, here)
        if text is not None:
            texts.append(text)
    return "\n".join(texts)


def part_string(part: Mapping[str, Any], key: str, here: str) -> str:
    """``part[key]``, which must be a string."""
    text = part.get(key)
    if not isinstance(text, str):
        raise InvalidRequest(f"{here}.{key} must be a string", field=f"{here}.{key}")
    return text


def unsupported_part(here: str, noun: str, kind: Any) -> InvalidRequest:
    """The refusal of a part type the dialect does not know: only text ones are taken."""
    short = noun.rsplit(" ", 1)[-1]
    return InvalidRequest(f"{here}: {noun}s of type {kind!r} are not supported; "
                          f"only text {short}s are", field=here)


def join_system(parts: list[str]) -> str | None:
    text = "\n\n".join(p for p in parts if p.strip())
    return text or None


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


# --------------------------------------------------------------------------- SSE


def sse(data: Mapping[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event: ``event: <name>`` (optional) and a one-line ``data:``."""
    payload = data if isinstance(data, str) else json.dumps(
        data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


KEEPALIVE_COMMENT = b": keep-alive\n\n"


class TextJoiner:
    """Assistant text as it streams, with a paragraph break after tool activity.

    Claude's deltas of two assistant messages separated by a tool call would otherwise
    run together ("I'll check.The answer is ..."); Codex already separates its messages.
    """

    def __init__(self) -> None:
        self._sent = False
        self._break = False

    def feed(self, event: Event) -> str | None:
        if event.type in ("tool_use", "tool_result"):
            self._break = self._sent
            return None
        if event.type != "message" or event.content.get("role", "assistant") != "assistant":
            return None
        text = event.content.get("text") or ""
        if not text:
            return None
        if self._break and not text.startswith("\n"):
            text = "\n\n" + text
        self._break = False
        self._sent = True
        return text


def document_errors(blp: Any, schema: Any, statuses: Mapping[int, str]
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """OpenAPI: the vendor's error body for ``statuses`` and as the default response."""
    return error_responses(blp, schema, statuses,
                           default="Any other error, in the same format.")
