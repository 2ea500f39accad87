"""The text of a config file before it is parsed: `${VAR}` expansion, and the error type.

`interpolate` expands variables the way the real engine does (`EngineConfig::expand_env_vars`
in `engine/src/workers/config.rs`); `ConfigError` is what every part of the config reader
raises (`config.py`, `config_limits.py`, the services' own blocks), kept here so that each
of them can import it without importing the others.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from .._version import __version__

__all__ = ["ConfigError", "interpolate"]

_VARIABLE: Final = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")
"""`${NAME}` or `${NAME:default}`: the real engine's pattern, so the same text expands the
same way (no nesting, no escape; a default ends at the first `}`)."""
_ENGINE_VERSION: Final = "__III_ENGINE_VERSION__"
"""A default the real engine replaces by its own version; here, anyiii's."""


class ConfigError(ValueError):
    """A config file the engine cannot use; the message names the file and the key.

    Services raise it too for a `config:` block they cannot accept, so the CLI reports both
    the same way (exit code 2, no traceback).
    """


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Expand `${NAME}` and `${NAME:default}` in `text` as the real engine does.

    A set variable wins, even when empty; otherwise the default (`${NAME:}` is an empty
    default). Expansion is textual and happens before YAML parsing, so it works in any
    scalar, in keys and in comments, and the result is typed by YAML (`port: ${P:3112}` is
    an integer). One pass: a value that itself contains `${…}` is not expanded again.
    Raises `ConfigError` naming every variable that is unset and has no default.
    """
    missing: list[str] = []

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is not None:
            return value
        if default == _ENGINE_VERSION:
            return __version__
        if default is not None:
            return default
        line = text.count("\n", 0, match.start()) + 1
        missing.append(f"{name} (line {line})")
        return match.group(0)

    expanded = _VARIABLE.sub(expand, text)
    if missing:
        raise ConfigError(
            "environment variable not set and no default given: " + ", ".join(missing)
        )
    return expanded
