"""The real iii engine's `config.yaml`, read for the embedded engine.

`load_config(path)` reads the file the way the real engine does (`engine/src/workers/
config.rs`): `${VAR}` / `${VAR:default}` are expanded in the raw text first
(`config_text.py`), then the YAML is parsed and its `workers:` (and legacy `modules:`) list
is mapped onto what the embedded engine has: the worker listener (`iii-worker-manager`, and
one RBAC-gated listener per such entry with `rbac:`), the REST listener (`iii-http`), the
stream subscriber port (`iii-stream`), the `config:` block of each in-engine service
(state, stream, pub/sub, cron, queue), which the services read themselves, and anyiii's own
limits (the `anyiii:` key of the `iii-worker-manager` entry, `config_limits.py`).

What the embedded engine does not implement (other workers, redis/rabbitmq/bridge
adapters, CORS, …) is never an error: it is listed in `EngineConfig.skipped`, one line
each, for the CLI to log. Only a file that cannot be read, is not YAML, names an unset
variable without a default, or gives a wrong type to a key the embedded engine uses raises
`ConfigError`, whose message says where and why.

Nothing here does I/O beyond reading the one file, so the mapping is tested directly.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

from .._protocol.codes import PRE_HANDLER
from .config_limits import LIMITS_KEY, Limits, read_limits
from .config_names import (
    ADAPTER_WORKERS,
    BUILTIN_ADAPTER,
    HTTP_FUNCTIONS_WORKER,
    HTTP_WORKER,
    IN_PROCESS_ADAPTERS,
    KV_DEFAULT_FILE,
    LISTENER_KEYS,
    LISTENER_WORKERS,
    NOT_HONOURED,
    RBAC_LISTENER_KEYS,
    RENAMED_WORKERS,
    SERVICE_WORKERS,
    SILENT_WORKERS,
    STATE_WORKER,
    STREAM_WORKER,
    UNIMPLEMENTED_WORKERS,
    WORKER_MANAGER,
)
from .config_text import ConfigError, interpolate
from .http_targets import HttpFunctionSettings
from .rbac import RbacSettings, parse_rbac

__all__ = [
    "config_from_mapping",
    "DEFAULT_DATA_DIR",
    "DEFAULT_HTTP_PORT",
    "DEFAULT_STREAM_PORT",
    "DEFAULT_WORKER_PORT",
    "ConfigError",
    "EngineConfig",
    "Listener",
    "interpolate",
    "load_config",
    "parse_config",
]

DEFAULT_WORKER_PORT: Final = 49134
"""The real engine's worker port (`iii-worker-manager`, `DEFAULT_PORT`)."""
DEFAULT_HTTP_PORT: Final = 3111
"""The real engine's REST port (`iii-http`)."""
DEFAULT_STREAM_PORT: Final = 3112
"""The real engine's stream subscriber port (`iii-stream`)."""
DEFAULT_DATA_DIR: Final = Path("data")
"""Where `anyiii engine` keeps its database unless told otherwise: `./data`, relative to the
working directory, where the real engine's own example configs put their file-based stores
(`./data/state_store.db`, `./data/stream_store`, …)."""


@dataclass(frozen=True, slots=True)
class Listener:
    """A socket a worker entry asks for: its port, and its host if the file gives one."""

    port: int
    host: str | None = None


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """What a config file asks of the embedded engine.

    `workers` / `http` / `stream` are the listeners of `iii-worker-manager`, `iii-http` and
    `iii-stream` (None when the file has no such entry: no REST listener, no stream port;
    the worker listener then takes its defaults, as in the real engine where it is
    mandatory). `services` maps each listed in-engine service (`iii-state`, …) to its
    `config:` block, in file order. `data_dir` is where the file's file-based adapters keep
    their data (the parent of their `file_path`), `in_memory` says the file chose in-memory
    stores only; both unset leaves the choice to the CLI. `http_middleware` is `iii-http`'s
    engine-wide middleware, as function ids in the order they run. `http_functions` is the
    policy of `iii-http-functions`' `security:` block (None: not listed). `rbac` has one
    RBAC-gated worker listener per `iii-worker-manager` entry with an `rbac:` block, in file
    order (their `port`/`host` included), as the real engine starts one listener per entry.
    `limits` is what the `anyiii:` key of a `iii-worker-manager` entry sets
    (`config_limits.py`). `skipped` says, one line each, what the embedded engine does not
    implement and ignores.
    """

    source: str
    workers: Listener | None = None
    http: Listener | None = None
    stream: Listener | None = None
    http_timeout: float | None = None
    http_middleware: tuple[str, ...] = ()
    handshake_timeout: float | None = None
    namespace_grace: float | None = None
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    data_dir: Path | None = None
    in_memory: bool = False
    http_functions: HttpFunctionSettings | None = None
    rbac: tuple[RbacSettings, ...] = ()
    limits: Limits = field(default_factory=lambda: MappingProxyType({}))
    skipped: tuple[str, ...] = ()


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> EngineConfig:
    """Read and map the config file at `path` (`environ` defaults to `os.environ`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    return parse_config(text, source=str(path), environ=environ)


def parse_config(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> EngineConfig:
    """Map the text of a config file; `source` names it in messages."""
    try:
        expanded = interpolate(text, os.environ if environ is None else environ)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    stream = io.StringIO(expanded)
    stream.name = source  # so that PyYAML's message names the file, with line and column
    try:
        document = yaml.safe_load(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return _Reader(source).read(document)


def config_from_mapping(document: Mapping[str, Any], *, source: str = "<mapping>") -> EngineConfig:
    """Map a config already in Python form (what the YAML file parses to). No `${VAR}`
    interpolation: the values are taken as given."""
    return _Reader(source).read(document)


class _Reader:
    """One pass over a parsed document, collecting the result and the skipped notes."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.skipped: list[str] = []
        self.listeners: dict[str, Listener] = {}
        self.services: dict[str, Mapping[str, Any]] = {}
        self.stores: list[tuple[str, str, str | None]] = []
        """(worker, store_method, file_path) of each built-in adapter that names one."""
        self.http_timeout: float | None = None
        self.http_middleware: tuple[str, ...] = ()
        self.handshake_timeout: float | None = None
        self.http_functions: HttpFunctionSettings | None = None
        self.rbac: list[RbacSettings] = []
        self.limits: Limits | None = None

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {problem}")

    def skip(self, note: str) -> None:
        if note not in self.skipped:  # each thing is reported once
            self.skipped.append(note)

    def read(self, document: object) -> EngineConfig:
        if document is None:
            document = {}
        if not isinstance(document, dict):
            raise self.fail("top level", "must be a mapping with a `workers:` list")
        grace: float | None = None
        for key, value in document.items():
            if key == "registration_namespace_grace_ms":
                grace = _millis(self, str(key), value, minimum=0)
            elif key not in ("workers", "modules"):
                self.skip(f"top-level key {key!r} is not used by the embedded engine")
        entries = [*self.entries(document, "workers"), *self.entries(document, "modules")]
        self.check_renames({base for _, base, _ in entries})
        for where, base, block in entries:
            self.entry(where, RENAMED_WORKERS.get(base, base), block)
        data_dir, in_memory = self.storage()
        return EngineConfig(
            source=self.source,
            workers=self.listeners.get(WORKER_MANAGER),
            http=self.listeners.get(HTTP_WORKER),
            stream=self.listeners.get(STREAM_WORKER),
            http_timeout=self.http_timeout,
            http_middleware=self.http_middleware,
            handshake_timeout=self.handshake_timeout,
            namespace_grace=grace,
            services=MappingProxyType(self.services),
            data_dir=data_dir,
            in_memory=in_memory,
            http_functions=self.http_functions,
            rbac=tuple(self.rbac),
            limits=MappingProxyType({}) if self.limits is None else self.limits,
            skipped=tuple(self.skipped),
        )

    def entries(
        self, document: Mapping[Any, Any], key: str
    ) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(where, worker type, config block) of each entry of a list."""
        items = document.get(key)
        if items is None:
            return
        if not isinstance(items, list):
            raise self.fail(key, "must be a list of `- name: …` entries")
        for index, item in enumerate(items):
            where = f"{key}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise self.fail(where, "each entry must be a mapping with a string `name:`")
            name = item["name"]
            where = f"{where} ({name})"
            block = item.get("config")
            if block is not None and not isinstance(block, dict):
                raise self.fail(where, "`config:` must be a mapping")
            if LIMITS_KEY in item:
                self.read_limits(where, name, item[LIMITS_KEY])
            for extra in [k for k in item if k not in ("name", "config", "image", LIMITS_KEY)]:
                self.skip(f"{name}: entry key {extra!r} is not used by the embedded engine")
            if item.get("image") is not None:
                self.skip(f"{name}: runs from an image (`image:`); start that worker yourself")
                continue
            # `iii-http#1` is the real engine's instance suffix; the type is before the `#`.
            yield where, name.split("#", 1)[0], block or {}

    def check_renames(self, names: set[str]) -> None:
        """Refuse, like the real engine, a file that lists a worker under both its names."""
        both = [
            f"'{old}' is the deprecated name for '{new}', but both are present; remove '{old}'"
            for new, old in RENAMED_WORKERS.items()
            if new in names and old in names
        ]
        if both:
            raise self.fail("workers", "duplicate worker configurations: " + "; ".join(both))

    def entry(self, where: str, name: str, block: Mapping[str, Any]) -> None:
        if name == WORKER_MANAGER and "rbac" in block:
            self.rbac_listener(where, name, block)
            return
        if name in LISTENER_WORKERS and name in self.listeners:
            port = block.get("port")
            self.skip(
                f"{name}: another listener{f' on port {port}' if port is not None else ''}"
                " is not served (the embedded engine has one)"
            )
            return
        if name in SERVICE_WORKERS and name in self.services:
            self.skip(f"{name}: listed twice; only the first entry is used")
            return
        if name == WORKER_MANAGER:
            self.listeners[name] = self.listener(where, block, DEFAULT_WORKER_PORT)
            if "handshake_timeout_ms" in block:
                self.handshake_timeout = _millis(self, where, block["handshake_timeout_ms"])
            self.unused_keys(name, block)
        elif name == HTTP_WORKER:
            self.listeners[name] = self.listener(where, block, DEFAULT_HTTP_PORT)
            if "default_timeout" in block:
                self.http_timeout = _millis(self, where, block["default_timeout"])
            self.http_middleware = self.middleware(where, block.get("middleware"))
            self.unused_keys(name, block)
        elif name in SERVICE_WORKERS:
            if name == STREAM_WORKER:
                self.listeners[name] = self.listener(where, block, DEFAULT_STREAM_PORT)
            if name in ADAPTER_WORKERS:
                self.adapter(where, name, block)
            self.services[name] = MappingProxyType(dict(block))
        elif name == HTTP_FUNCTIONS_WORKER:
            if self.http_functions is not None:
                self.skip(f"{name}: listed twice; only the first entry is used")
            else:
                self.http_functions = self.url_policy(where, block)
        elif name in SILENT_WORKERS:
            pass  # the embedded engine always has it built in
        elif name in UNIMPLEMENTED_WORKERS:
            self.skip(f"{name}: {UNIMPLEMENTED_WORKERS[name]}")
        else:
            self.skip(
                f"{name}: not a worker the embedded engine has (the real engine would start "
                "it as an external worker); start it yourself"
            )

    def read_limits(self, where: str, name: str, section: object) -> None:
        """The `anyiii:` key of an entry: anyiii's limits (`config_limits.py`), on one
        `iii-worker-manager` entry, the only place for it."""
        if name.split("#", 1)[0] != WORKER_MANAGER:
            raise self.fail(where, f"`{LIMITS_KEY}:` belongs on the `{WORKER_MANAGER}` entry")
        if self.limits is not None:
            raise self.fail(where, f"`{LIMITS_KEY}:` is given on two entries; keep one")
        try:
            self.limits = read_limits(section)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def rbac_listener(self, where: str, name: str, block: Mapping[str, Any]) -> None:
        """A `iii-worker-manager` with `rbac:`: one more RBAC-gated listener."""
        listener = self.listener(where, block, DEFAULT_WORKER_PORT)
        try:
            self.rbac.append(parse_rbac(block, port=listener.port, host=listener.host))
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None
        if "handshake_timeout_ms" in block:
            self.handshake_timeout = _millis(self, where, block["handshake_timeout_ms"])
        for key in block:
            if key not in RBAC_LISTENER_KEYS:
                self.skip(f"{name}: `{key}` is not used by the embedded engine")

    def unused_keys(self, name: str, block: Mapping[str, Any]) -> None:
        """Note each key of a listener's block that the embedded engine does not honour."""
        for key in block:
            if key not in LISTENER_KEYS[name]:
                reason = NOT_HONOURED[name].get(key, "is not used by the embedded engine")
                self.skip(f"{name}: `{key}` {reason}")

    def middleware(self, where: str, entries: object) -> tuple[str, ...]:
        """`iii-http`'s `middleware: [{function_id, phase?, priority?}]`, as the ids to run in
        ascending `priority` (ties keep file order). A key the real engine does not know is
        refused like there: a misspelt `priority` would silently reorder an auth chain."""
        if entries is None:
            return ()
        if not isinstance(entries, list):
            raise self.fail(where, "`middleware` must be a list of `- function_id: …` entries")
        chosen: list[tuple[int, str]] = []
        for index, entry in enumerate(entries):
            at = f"{where}: middleware[{index}]"
            if not isinstance(entry, dict):
                raise self.fail(at, "must be a mapping with a `function_id`")
            unknown = sorted(str(key) for key in entry if key not in _MIDDLEWARE_KEYS)
            if unknown:
                raise self.fail(at, f"unknown keys {unknown} (known: function_id, phase, priority)")
            function_id, phase = entry.get("function_id"), entry.get("phase", PRE_HANDLER)
            priority = entry.get("priority", 0)
            if not isinstance(function_id, str) or not function_id.strip():
                raise self.fail(at, f"`function_id` must be a function id, not {function_id!r}")
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise self.fail(at, f"`priority` must be an integer, not {priority!r}")
            if phase != PRE_HANDLER:
                self.skip(
                    f"{HTTP_WORKER}: middleware {function_id!r} of phase {phase!r} is never "
                    f"run (only {PRE_HANDLER} exists)"
                )
                continue
            chosen.append((priority, function_id))
        return tuple(function_id for _, function_id in sorted(chosen, key=lambda c: c[0]))

    def url_policy(self, where: str, block: Mapping[str, Any]) -> HttpFunctionSettings:
        """`iii-http-functions`' block: `security: {url_allowlist, block_private_ips,
        require_https}` (an empty allowlist allows every host, as in the real engine).
        Other keys are noted and skipped, like every key the embedded engine does not use."""
        security = block.get("security") or {}
        if not isinstance(security, dict):
            raise self.fail(where, "`security` must be a mapping")
        unused = [key for key in block if key != "security"]
        unused += [f"security.{key}" for key in security if key not in _SECURITY_KEYS]
        for key in unused:
            self.skip(f"{HTTP_FUNCTIONS_WORKER}: `{key}` is not used by the embedded engine")
        allowlist = security.get("url_allowlist") or []
        if not isinstance(allowlist, list) or not all(isinstance(p, str) for p in allowlist):
            raise self.fail(where, "`url_allowlist` must be a list of host patterns")
        flags = {key: security.get(key, True) for key in ("block_private_ips", "require_https")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise self.fail(where, f"`{key}` must be true or false, not {value!r}")
        return HttpFunctionSettings(url_allowlist=tuple(allowlist) or ("*",), **flags)

    def listener(self, where: str, block: Mapping[str, Any], default_port: int) -> Listener:
        port = block.get("port", default_port)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise self.fail(where, f"`port` must be a port number (0-65535), not {port!r}")
        host = block.get("host")
        if host is not None and (not isinstance(host, str) or not host):
            raise self.fail(where, f"`host` must be an address, not {host!r}")
        return Listener(port, host)

    def adapter(self, where: str, name: str, block: Mapping[str, Any]) -> None:
        """Note a storage choice of a built-in adapter; skip the adapters not built in."""
        adapter = block.get("adapter")
        if adapter is None:
            return
        if not isinstance(adapter, dict) or not isinstance(adapter.get("name"), str):
            raise self.fail(where, "`adapter` must be a mapping with a string `name:`")
        builtin = BUILTIN_ADAPTER[name]
        if adapter["name"] != builtin and adapter["name"] not in IN_PROCESS_ADAPTERS:
            self.skip(
                f"{name}: adapter {adapter['name']!r} is not available in the embedded "
                f"engine; its built-in {builtin!r} adapter is used instead"
            )
            return
        options = adapter.get("config") or {}
        if not isinstance(options, dict):
            raise self.fail(where, "`adapter.config` must be a mapping")
        method, path = options.get("store_method"), options.get("file_path")
        if method is not None and not isinstance(method, str):
            raise self.fail(where, f"`store_method` must be a string, not {method!r}")
        if path is not None and not isinstance(path, str):
            raise self.fail(where, f"`file_path` must be a string, not {path!r}")
        if method in ("file_based", "in_memory"):
            self.stores.append((name, method, path))
        elif method is not None:
            # The real engine warns and keeps such a store in memory; here the CLI's default
            # applies, so a typo loses no data.
            self.skip(f"{name}: `store_method` {method!r} is not in_memory or file_based")

    def storage(self) -> tuple[Path | None, bool]:
        """The data directory the file's adapters imply, or that they are all in memory.

        The embedded engine keeps every service in one SQLite database, so the first
        file-based store (the state service's if it has one) decides the directory: the
        parent of its `file_path`, relative to the working directory as in the real engine.
        """
        files = sorted(
            (
                (worker, path or KV_DEFAULT_FILE)
                for worker, method, path in self.stores
                if method == "file_based"
            ),
            key=lambda store: store[0] != STATE_WORKER,
        )
        if files:
            directory = Path(files[0][1]).parent
            for worker, path in files[1:]:
                if Path(path).parent != directory:
                    self.skip(
                        f"{worker}: `file_path` {path!r} is not used separately; all data "
                        f"is kept in one database in {str(directory)!r}"
                    )
            return directory, False
        return None, any(method == "in_memory" for _, method, _ in self.stores)


_MIDDLEWARE_KEYS: Final = frozenset({"function_id", "phase", "priority"})
"""The keys of one `iii-http` middleware entry (the real engine's `MiddlewareConfig`)."""
_SECURITY_KEYS: Final = frozenset({"url_allowlist", "block_private_ips", "require_https"})


def _millis(reader: _Reader, where: str, value: object, *, minimum: float = 1) -> float:
    """A duration given in milliseconds, as seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise reader.fail(where, f"expected a duration in milliseconds, not {value!r}")
    return value / 1000
