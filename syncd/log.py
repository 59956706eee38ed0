"""structlog set-up: JSON lines when not on a terminal, readable console otherwise.

Addresses and secrets never reach a log in clear: ``mask_personal_data`` rewrites every event.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

# An address is any run of characters around an "@" up to a separator: the local part and the
# domain may hold any letter (``zoë@exämple.fr``, ``josé.garcía@…``), combining marks included,
# and the domain may be punycode. Masking too much beats leaking a name.
_NOT_IN_ADDRESS = r"\s@<>()\[\]\\,;:\"/"
# A match starts where a run of address characters starts and is bounded (an address has at
# most 254 characters): a long run of text without an address costs linear time, not quadratic.
_EMAIL = re.compile(
    rf"(?<![^{_NOT_IN_ADDRESS}])([^{_NOT_IN_ADDRESS}])[^{_NOT_IN_ADDRESS}]{{0,254}}@([^{_NOT_IN_ADDRESS}']+)"
)
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|token|password|authorization)", re.I)
# Values that look like provider keys: Brevo "xkeysib-…", Mailchimp "<32 hex>-us19".
_KEY_VALUE = re.compile(r"\b(xkeysib-[A-Za-z0-9-]{8,}|[0-9a-f]{32}-us\d{1,2})\b")


def mask_email(text: str) -> str:
    """``jean@müller.de`` → ``j***@müller.de``: the first character of the local part, the domain."""
    return _EMAIL.sub(r"\1***@\2", text) if "@" in text else text


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _KEY_VALUE.sub("***", mask_email(value))
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEY.search(str(k)) else _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_mask(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (an exception, a record) would be rendered with its repr(), address and all.
    return _mask(str(value))


def mask_personal_data(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if _SECRET_KEY.search(k) and v is not None else _mask(v)) for k, v in event.items()}


def configure(level: str = "info", *, json: bool | None = None, stream: Any = None) -> None:
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
