"""config.yaml as typed, validated models (docs/configuration.md).

The YAML file is the base; every key can be overridden from the environment as
``BRIDGE_<SECTION>__<KEY>``, which is where secrets come from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bridge.policy import ChatType

DEFAULT_CONFIG_PATH = "config.yaml"
# Below these a key can be guessed or brute-forced offline (an HS256 key from one token).
MIN_JWT_SECRET_BYTES = 32
MIN_SERVICE_TOKEN_CHARS = 24
# A leaked web-client token lives at most this long, whatever the config says.
MAX_TOKEN_TTL_CAP_S = 30 * 86_400


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ORIGIN = re.compile(r"^https?://[a-z0-9.\-\[\]:]+$")


def _origin(value: str) -> str:
    """An origin as browsers send it: lower case, no path, no trailing slash."""
    origin = value.strip().lower().removesuffix("/")
    parts = urlsplit(origin)
    if not _ORIGIN.match(origin) or not parts.hostname or parts.path or parts.query:
        raise ValueError("must be an origin: http(s)://host[:port], without path or wildcard")
    return origin


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: PositiveInt = 1_048_576
    # Graceful stop: how long in-flight requests get after SIGTERM.
    shutdown_timeout_s: float = Field(default=10.0, gt=0)
    # A request body not fully arrived within this gets 408 and its connection is closed.
    body_timeout_s: float = Field(default=10.0, gt=0)
    # Connections served at once; beyond it new ones are closed at once. None: derived from
    # the file-descriptor limit (handlers/server.py), so accept() never runs out of them.
    max_connections: PositiveInt | None = None
    # Origins (scheme://host[:port]) whose pages may call the web-client API (CORS) and open
    # the feed; the service's own origin always may.
    cors_origins: list[Annotated[str, AfterValidator(_origin)]] = Field(default_factory=list)


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///./bridge.db"

    @field_validator("url")
    @classmethod
    def _supported_driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return url


class FeedConfig(_Section):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    history_retention_s: PositiveInt = 604_800
    # Frames a socket may have queued before it counts as too slow and is closed.
    send_queue_size: PositiveInt = 1000
    # The Redis pub/sub channel: instances sharing one database must share it too.
    channel: str = Field(default="pachca-bridge:feed", min_length=1)

    @model_validator(mode="after")
    def _redis_needs_url(self) -> FeedConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("feed.url is required when feed.backend is redis")
        return self


class LimitsConfig(_Section):
    posts_per_minute: int = Field(default=120, ge=0)
    # Open WebSockets per user on one instance; no "off" value: a token must not be able to
    # hold thousands of sockets, and whoever needs many can set a large number.
    sockets_per_user: PositiveInt = 10


def _jwt_secret_long_enough(secret: SecretStr) -> SecretStr:
    # Empty means "generate one"; the message never quotes the value.
    size = len(secret.get_secret_value().encode())
    if 0 < size < MIN_JWT_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_JWT_SECRET_BYTES} bytes")
    return secret


def _service_token_long_enough(token: SecretStr) -> SecretStr:
    if len(token.get_secret_value()) < MIN_SERVICE_TOKEN_CHARS:
        raise ValueError(f"must be at least {MIN_SERVICE_TOKEN_CHARS} characters")
    return token


class AuthConfig(_Section):
    jwt_secret: Annotated[SecretStr, AfterValidator(_jwt_secret_long_enough)] = SecretStr("")
    jwt_audience: str | None = None
    service_tokens: list[Annotated[SecretStr, AfterValidator(_service_token_long_enough)]] = Field(
        default_factory=list
    )
    # The longest lifetime (exp - iat) a web-client token may have; at most 30 days.
    max_token_ttl_s: int = Field(default=86_400, gt=0, le=MAX_TOKEN_TTL_CAP_S)


class ChannelsConfig(_Section):
    default: int | None = None
    subjects: dict[str, int] = Field(default_factory=dict)
    tutors: int | None = None


def is_loopback(host: str) -> bool:
    """Whether a URL's host is this machine (a test double, a local proxy)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_unless_loopback(url: str) -> str:
    """The bot token travels in every request: plain http only to this machine (a test
    double, a local proxy)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("must be an absolute URL with a host")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host)):
        return url
    raise ValueError("must use https (plain http only for a loopback host)")


class PachcaConfig(_Section):
    enabled: bool = False
    api_url: Annotated[str, AfterValidator(_https_unless_loopback)] = (
        "https://api.pachca.com/api/shared/v1"
    )
    token: SecretStr = SecretStr("")
    signing_secret: SecretStr | list[SecretStr] = SecretStr("")
    bot_user_id: int | None = None
    webhook_tolerance_s: float = Field(default=60, gt=0)
    allowed_ips: list[str] = Field(default_factory=list)
    # Proxies whose X-Forwarded-For is believed when checking allowed_ips.
    trusted_proxies: list[str] = Field(default_factory=list)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    rate_per_chat: float = Field(default=4, gt=0)
    rate_global: float = Field(default=50, gt=0)
    max_attempts: PositiveInt = 10
    request_timeout_s: float = Field(default=10, gt=0)
    # Pachca users who may stay in any forum thread (a chat_member webhook never removes them).
    staff_user_ids: list[int] = Field(default_factory=list)

    @property
    def signing_secrets(self) -> list[str]:
        """Every configured secret, non-empty ones only (a list allows rotation)."""
        raw = (
            self.signing_secret if isinstance(self.signing_secret, list) else [self.signing_secret]
        )
        return [s.get_secret_value() for s in raw if s.get_secret_value()]

    def channel_for(self, chat_type: str, subject_id: str) -> int | None:
        """Where a forum chat's thread is opened: a tutor chat in ``channels.tutors``,
        else the subject's channel, else ``channels.default``."""
        by_subject = self.channels.subjects.get(subject_id)
        if chat_type == ChatType.TUTOR and self.channels.tutors is not None:
            return self.channels.tutors
        return by_subject if by_subject is not None else self.channels.default


class RemindersConfig(_Section):
    """Questions waiting for an answer (docs/configuration.md): the bot reminds the teacher or
    tutor in Pachca of a student's question unanswered ``after_s``, at most once a ``repeat_s``."""

    enabled: bool = False
    after_s: float = Field(default=14_400, gt=0)
    repeat_s: float = Field(default=86_400, gt=0)


class S3Config(_Section):
    """An S3-compatible bucket (AWS, MinIO, Yandex Object Storage). Credentials come from the
    environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from this file."""

    bucket: str | None = None
    endpoint_url: str | None = None  # None: AWS itself
    region: str | None = None
    prefix: str = ""  # put before every object's key, e.g. "bridge/"


class FilesConfig(_Section):
    storage: Literal["local", "s3"] = "local"
    path: str = "./files"  # where local storage keeps files
    s3: S3Config = Field(default_factory=S3Config)
    max_bytes: PositiveInt = 20_971_520  # per file
    url_ttl_s: PositiveInt = 3600  # lifetime of a signed download link

    @model_validator(mode="after")
    def _s3_needs_bucket(self) -> FilesConfig:
        if self.storage == "s3" and not self.s3.bucket:
            raise ValueError("files.s3.bucket is required when files.storage is s3")
        return self


class LoggingConfig(_Section):
    # auto: readable in a terminal, JSON lines otherwise.
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Config(BaseSettings):
    """The whole config.yaml. Environment variables override file values."""

    model_config = SettingsConfigDict(
        env_prefix="BRIDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    pachca: PachcaConfig = Field(default_factory=PachcaConfig)
    reminders: RemindersConfig = Field(default_factory=RemindersConfig)
    files: FilesConfig = Field(default_factory=FilesConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment wins over them.
        return (env_settings, init_settings)


class ConfigError(Exception):
    """An unreadable or invalid config; ``problems`` are ``(key path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "; ".join(f"{path}: {msg}" for path, msg in problems)
        super().__init__(f"{source}: {lines}")


def default_config_path() -> str:
    return os.environ.get("BRIDGE_CONFIG") or DEFAULT_CONFIG_PATH


def parse_config(data: Mapping[str, Any], source: str = "config") -> Config:
    """Validate a decoded config mapping (environment overrides applied). An override that
    does not parse is the environment's problem, named by its variable, not the file's."""
    problems = environment_problems(os.environ)
    if problems:
        raise ConfigError(ENVIRONMENT, problems)
    try:
        return Config(**data)
    except ValidationError as exc:
        raise ConfigError(source, _naming_overrides(_problems(exc), os.environ)) from None
    except SettingsError as exc:  # what the checks below did not foresee, still in one line
        raise ConfigError(ENVIRONMENT, [(f"{ENV_PREFIX}*", str(exc))]) from None


ENVIRONMENT = "environment"
ENV_PREFIX = "BRIDGE_"
ENV_DELIMITER = "__"
_JSON_EXAMPLES = {list: 'a JSON list, like ["a", "b"]', dict: 'a JSON object, like {"key": 1}'}


def environment_problems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, what it expects)`` for each ``BRIDGE_<SECTION>__<KEY>`` override that
    names no key or holds no valid value for it. Each is checked on its own, against its
    section, the way pydantic-settings reads it (lists and maps as JSON)."""
    problems = []
    for name, raw in sorted(environ.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        section = Config.model_fields.get(path[0])
        if section is None:
            continue  # BRIDGE_CONFIG, and variables that are not config keys
        problem = _override_problem(section.annotation, path, raw)
        if problem is not None:
            problems.append((name, problem))
    return problems


def _override_problem(section: Any, path: list[str], raw: str) -> str | None:
    key = ".".join(path)
    annotation: Any = section
    for part in path[1:]:
        fields = getattr(annotation, "model_fields", None)
        if not isinstance(fields, dict) or part not in fields:
            return f"{key} is not a config key"
        annotation = fields[part].annotation
    value: Any = raw
    kinds = _json_kinds(annotation)
    if kinds:
        try:
            value = json.loads(raw)
        except ValueError:
            if not _takes_plain(annotation):
                expected = " or ".join(_JSON_EXAMPLES.get(k, "JSON") for k in kinds)
                return f"{key} expects {expected}; the value is not JSON"
            value = raw
    nested: Any = value
    for part in reversed(path[1:]):
        nested = {part: nested}
    try:
        section.model_validate(nested)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            loc = [str(p) for p in err["loc"] if not _is_type_tag(p)]
            if loc[: len(path) - 1] == path[1:]:
                where = ".".join([path[0], *loc])
                return f"{where}: {err['msg']}"
    return None


def _naming_overrides(
    problems: list[tuple[str, str]], environ: Mapping[str, str]
) -> list[tuple[str, str]]:
    """Each problem with the environment variables that set keys of what it is about: values
    valid one by one may still be wrong together (``BRIDGE_FEED__BACKEND=redis`` without a
    URL), and the admin looks for them in the file otherwise. Names only: values may be
    secrets."""
    overrides = {
        name: name[len(ENV_PREFIX) :].lower().replace(ENV_DELIMITER, ".")
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX)
        and name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)[0] in Config.model_fields
    }
    named = []
    for path, message in problems:
        setting = [
            name
            for name, key in overrides.items()
            if path == "(root)"
            or key == path
            or key.startswith(path + ".")
            or path.startswith(key + ".")
        ]
        if setting:
            message = f"{message} (the environment sets {', '.join(setting)})"
        named.append((path, message))
    return named


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _json_kind(annotation: Any) -> type | None:
    origin = get_origin(annotation) or annotation
    if origin in (list, set, tuple):
        return list
    if origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
        return dict
    return None


def _json_kinds(annotation: Any) -> list[type]:
    kinds = [_json_kind(a) for a in _members(annotation)]
    return list(dict.fromkeys(k for k in kinds if k is not None))


def _takes_plain(annotation: Any) -> bool:
    """Whether a plain string is also a value (``SecretStr | list[SecretStr]``)."""
    return any(_json_kind(a) is None for a in _members(annotation))


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate config.yaml.

    Without an explicit path (and no ``$BRIDGE_CONFIG``) a missing ./config.yaml means all
    defaults; a file that was named explicitly must exist.
    """
    explicit = path is not None or bool(os.environ.get("BRIDGE_CONFIG"))
    path = Path(path or default_config_path())
    data: Any = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(str(path), [("(file)", f"cannot read YAML: {exc}")]) from None
    elif explicit:
        raise ConfigError(str(path), [("(file)", "no such file")])
    if not isinstance(data, dict):
        raise ConfigError(str(path), [("(root)", "must be a mapping of sections")])
    return parse_config(data, str(path))


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        # Members of a union add their type tags to the location; an admin needs the key only.
        loc = [str(p) for p in err["loc"] if not _is_type_tag(p)]
        problem = (".".join(loc) or "(root)", err["msg"])
        if problem not in problems:
            problems.append(problem)
    return problems


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and any(c in part for c in "[(")


ConfigListener = Callable[[Config, Config], None]


class LiveConfig:
    """The config in force. Services read ``.current`` on each use, so a reload applies
    ``auth``, ``limits``, ``pachca`` and ``files`` (all but its storage keys) at once without
    restarting anything. Those that must act on a change (open sockets whose token a new key
    refuses) ``subscribe``."""

    def __init__(self, config: Config):
        self._current = config
        self._listeners: list[ConfigListener] = []

    @property
    def current(self) -> Config:
        return self._current

    @current.setter
    def current(self, config: Config) -> None:
        old, self._current = self._current, config
        if config != old:
            for listener in self._listeners:
                listener(old, config)

    def subscribe(self, listener: ConfigListener) -> None:
        """``listener(old, new)`` runs after each change of the config in force."""
        self._listeners.append(listener)
