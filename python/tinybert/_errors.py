"""tinybert.Error: every failure of the engine, with the HTTP API's error fields."""

from __future__ import annotations

import json
from typing import Any, Optional

# tb_status (include/tinybert/tinybert.h): code -> name.
STATUS_NAMES = {
    0: "TB_OK",
    1: "TB_INVALID_ARGUMENT",
    2: "TB_MODEL_ERROR",
    3: "TB_INVALID_REQUEST",
    4: "TB_TOO_LARGE",
    5: "TB_UNSUPPORTED",
    6: "TB_OVERLOADED",
    7: "TB_INTERNAL",
}
_STATUS_CODES = {name: code for code, name in STATUS_NAMES.items()}


class Error(Exception):
    """A failed engine call: a model that cannot be loaded, a bad request, a wrong task...

    Attributes:
        status: the C API's status name, e.g. ``"TB_INVALID_REQUEST"``.
        code: the same as the tb_status number, e.g. ``3``.
        http_status: what the HTTP server would answer, e.g. ``400`` (None if not known).
        type: the HTTP API's error type, e.g. ``"invalid_request"``, ``"too_large"``.
        message: the engine's message (also ``str(error)``).
        input_index: which input text the problem is in, when known.
        position: the character (code point) in that text, when known.
    """

    status: str
    code: int
    http_status: Optional[int]
    type: str
    message: str
    input_index: Optional[int]
    position: Optional[int]

    __module__ = "tinybert"

    def __init__(
        self,
        message: str,
        *,
        status: str | int = "TB_INTERNAL",
        type: str = "internal",
        http_status: Optional[int] = None,
        input_index: Optional[int] = None,
        position: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        if isinstance(status, int):
            self.code = status
            self.status = STATUS_NAMES.get(status, str(status))
        else:
            self.status = status
            self.code = _STATUS_CODES.get(status, -1)
        self.message = message
        self.type = type
        self.http_status = http_status
        self.input_index = input_index
        self.position = position

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        where = "".join(
            f", {name}={value!r}"
            for name, value in (("input_index", self.input_index), ("position", self.position))
            if value is not None
        )
        return (f"tinybert.Error({self.message!r}, status={self.status!r}, "
                f"type={self.type!r}{where})")

    def __reduce__(self) -> Any:  # picklable (multiprocessing, concurrent.futures)
        return (_rebuild, (self.message, self.status, self.type, self.http_status,
                           self.input_index, self.position))

    @classmethod
    def _from_native(cls, code: int, error_json: str) -> "Error":
        """From a tb_status and tb_last_error_json() (called by tinybert._native)."""
        try:
            body = json.loads(error_json)["error"]
        except (ValueError, KeyError, TypeError):
            body = {"message": error_json or "unknown error"}
        return cls(
            str(body.get("message", "")),
            status=code,
            type=str(body.get("type", "internal")),
            http_status=body.get("status"),
            input_index=body.get("input_index"),
            position=body.get("position"),
        )


def _rebuild(message: str, status: str, type: str, http_status: Optional[int],
             input_index: Optional[int], position: Optional[int]) -> Error:
    return Error(message, status=status, type=type, http_status=http_status,
                 input_index=input_index, position=position)
