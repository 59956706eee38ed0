"""The marketers' YAML → validated models. Every error names the file, the line and the key.

``${VAR}`` and ``${VAR:-default}`` are replaced from the environment in every value; secrets
(API keys, webhook secrets, passwords) must come from the environment, never be written in clear.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from syncd.config.model import Config, ConfigError, Located
from syncd.secret import HOW_TO_MAKE_ONE, weakness

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
SECRET_KEYS = {"api_key", "webhook_secret", "webhook_token", "signing_secret", "password", "secret"}
# The secrets the operator makes up (the others are issued by a provider or a mail server): they
# must be strong. The webhook secret is a part of the webhook URL.
CHOSEN_SECRET_KEYS = {"webhook_secret", "webhook_token", "signing_secret", "secret"}


# --- loading --------------------------------------------------------------------------------


@dataclass
class _Loaded:
    data: Any
    lines: dict[tuple[Any, ...], int]


def _walk(node: yaml.Node, path: tuple[Any, ...], out: _Loaded, file: str) -> Any:
    out.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in result:
                raise ConfigError(file, key_node.start_mark.line + 1, _dotted(path + (key,)), "duplicate key")
            out.lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, path + (key,), out, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, path + (i,), out, file) for i, item in enumerate(node.value)]
    value = yaml.SafeLoader(" ").construct_object(node)  # scalar: int, bool, null, str
    if isinstance(value, str):
        value = _substitute(value, file, node.start_mark.line + 1, path)
    elif path and path[-1] in SECRET_KEYS and value is not None:
        value = str(value)
    if path and path[-1] in SECRET_KEYS and value is not None:
        _check_secret(str(node.value), value, file, node.start_mark.line + 1, path)
    return value


def _check_secret(written: str, value: Any, file: str, line: int, path: tuple[Any, ...]) -> None:
    """A secret comes from the environment, never from the file (not even as a default), and a
    secret the operator chooses is strong."""
    refs = list(_ENV.finditer(written))
    var = refs[0].group(1) if refs else _env_name(path)
    if not refs:
        raise ConfigError(
            file,
            line,
            _dotted(path),
            f"secrets come from the environment only: write ${{{var}}} and set that variable",
        )
    if any(m.group(2) for m in refs):
        raise ConfigError(
            file,
            line,
            _dotted(path),
            f"a secret cannot have a default written in the file: write ${{{var}}} and set {var}",
        )
    if path[-1] in CHOSEN_SECRET_KEYS and value:
        why = weakness(str(value), in_url=path[-1] == "webhook_secret")
        if why:
            raise ConfigError(file, line, _dotted(path), f"{var} is too weak: {why}; {HOW_TO_MAKE_ONE}")


def _substitute(text: str, file: str, line: int, path: tuple[Any, ...]) -> Any:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(file, line, _dotted(path), f"environment variable {name} is not set")

    replaced = _ENV.sub(repl, text)
    if replaced == text:
        return text
    # A whole-value reference keeps YAML typing (a port from ${PORT} is an int).
    return yaml.safe_load(replaced) if _ENV.fullmatch(text) and replaced else replaced


def _env_name(path: tuple[Any, ...]) -> str:
    return "_".join(str(p).upper() for p in path if not isinstance(p, int) and p not in {"providers"})


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _error_line(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds validator names ("function-after[...]") and field aliases to locations
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function"))))


def _message(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind == "missing":
        return "required key is missing"
    got = err.get("input")
    msg = msg.removeprefix("Value error, ")
    if kind in {"literal_error", "enum"} or not isinstance(got, dict | list):
        return f"{msg}; got {got!r}"
    return msg


def load_config(path: str | os.PathLike[str]) -> Config:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, None, "", "file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, "", f"not UTF-8 text ({exc.reason})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(file, line, "", f"not valid YAML: {exc.problem or exc.context}") from None
    if root is None:
        raise ConfigError(file, 1, "", "the file is empty; expected 'version: 1' and a 'lists:' section")
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(file, root.start_mark.line + 1, "", "expected a mapping of keys at the top level")
    loaded = _Loaded(None, {})
    loaded.data = _walk(root, (), loaded, file)
    try:
        return Config.model_validate(loaded.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, Located):
            loc = ctx_error.loc
            msg = str(ctx_error)
        else:
            loc = _clean_loc(err["loc"])
            msg = _message(err)
        loc = tuple("not" if p == "not_" else p for p in loc)
        raise ConfigError(file, _error_line(loc, loaded.lines), _dotted(loc), msg) from None
