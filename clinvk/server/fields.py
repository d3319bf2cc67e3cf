"""Strict marshmallow fields for request bodies, shared by every API dialect.

JSON clients send typed values: a boolean field takes only ``true``/``false``, an integer
field only JSON integers, a number field only JSON numbers; marshmallow's own fields would
also take ``"yes"``, ``1`` or ``"3"``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields


class StrictBoolean(fields.Boolean):
    """Only JSON ``true``/``false`` (marshmallow would also take ``"yes"`` or ``1``)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictInteger(fields.Integer):
    """Only JSON integers: no strings, floats or booleans."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class StrictNumber(fields.Float):
    """A JSON number (integer or float), never a string or boolean."""

    def _validated(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class Choice(fields.String):
    """A string from a fixed set, compared case-insensitively; ``""`` means "not given"."""

    def __init__(self, choices: tuple[str, ...], **kwargs: Any) -> None:
        self.choices = choices
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"enum": list(choices), **kwargs["metadata"]}
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str | None:
        text = super()._deserialize(value, attr, data, **kwargs)
        text = text.strip().lower()
        if not text:
            return None
        if text not in self.choices:
            raise ValidationError(f"must be one of {', '.join(self.choices)}; got {value!r}")
        return text


