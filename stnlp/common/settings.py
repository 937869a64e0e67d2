"""Settings: one TOML file, overridable by environment variables.

Lookup order (later wins): built-in defaults, the settings file, environment variables.
The settings file is ``$STNLP_SETTINGS`` if set, else ``./stnlp.toml`` if it exists.

=====================  ==============================  ===========================================
key                    environment variable            meaning
=====================  ==============================  ===========================================
store                  STNLP_STORE                     local store directory, or ``s3`` for AWS
stack                  STNLP_STACK                     stack name (``local`` for the embedded one)
region                 STNLP_REGION / AWS_REGION /     AWS region for the S3 store and backends
                       AWS_DEFAULT_REGION
endpoint_url           STNLP_ENDPOINT_URL              AWS endpoint override (moto, LocalStack)
disabled_plugins       STNLP_DISABLED_PLUGINS          comma-separated plugin names not to load
models.<component>     STNLP_MODEL_<COMPONENT>         hub model id per component (``-`` -> ``_``)
log_level              STNLP_LOG_LEVEL                 ``WARNING`` by default: quiet
=====================  ==============================  ===========================================

Every value is checked where it is read: a bad one is a :class:`UserError` naming the variable
or the file, the key and the value (``STNLP_LOG_LEVEL='LOUD': log_level must be one of ...``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError

DEFAULT_STORE = Path(".stnlp") / "store"


@dataclass(frozen=True)
class Settings:
    """All user settings, read once and passed around."""

    store: str = str(DEFAULT_STORE)
    stack: str = "local"
    region: str = "us-east-1"
    endpoint_url: str | None = None
    disabled_plugins: tuple[str, ...] = ()
    models: dict[str, str] = field(default_factory=dict)
    log_level: str = "WARNING"
    source: str = "defaults"

    @property
    def uses_s3(self) -> bool:
        """True when the store is the stack's S3 buckets rather than a local directory."""
        return self.store == "s3"

    def model_id(self, component: str, default: str) -> str:
        """The configured hub model id for ``component``, or ``default``."""
        return self.models.get(component, default)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (for the CLI's options and for tests), checked."""
        for key, value in changes.items():
            if key in _SCALAR_KEYS:
                check_setting(key, value, "option")
        return replace(self, **changes)


_SCALAR_KEYS = {"store", "stack", "region", "endpoint_url", "log_level"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s]*)?$")
_CHECKS: dict[str, tuple[Callable[[str], bool], str]] = {
    "store": (lambda v: bool(v.strip()) and "\0" not in v, "a folder or 's3'"),
    "stack": (lambda v: bool(_STACK.match(v)) and ".." not in v,
              "letters, digits, '.', '_' and '-' (a Pulumi stack name)"),
    "region": (lambda v: bool(_REGION.match(v)), "an AWS region such as us-east-1"),
    "endpoint_url": (lambda v: bool(_URL.match(v)), "an http:// or https:// URL"),
    "log_level": (lambda v: v.upper() in LOG_LEVELS, f"one of {', '.join(LOG_LEVELS)}"),
}  # fmt: skip


def check_setting(key: str, value: Any, origin: str) -> str:
    """``value`` for setting ``key`` if valid (log levels upper-cased), else a UserError
    naming ``origin`` (an environment variable or the settings file), the key and the value."""
    if not isinstance(value, str):
        raise UserError(f"{origin}: {key} must be text, got {type(value).__name__} {value!r}")
    valid, expected = _CHECKS[key]
    if not valid(value):
        raise UserError(f"{origin}: {key}={value[:80]!r} is not valid: expected {expected}")
    return value.upper() if key == "log_level" else value


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"settings file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"settings file {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"settings file {path} is not UTF-8 text") from exc
    except OSError as exc:
        raise UserError(f"settings file {path} cannot be read: {exc.strerror}") from exc


def _from_file(path: Path) -> dict[str, Any]:
    data = _read(path)
    unknown = set(data) - _SCALAR_KEYS - {"disabled_plugins", "models"}
    if unknown:
        raise UserError(f"settings file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    where = f"settings file {path}"
    values: dict[str, Any] = {
        k: check_setting(k, v, where) for k, v in data.items() if k in _SCALAR_KEYS
    }
    if "disabled_plugins" in data:
        plugins = data["disabled_plugins"]
        if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
            raise UserError(f"settings file {path}: disabled_plugins must be a list of names")
        values["disabled_plugins"] = tuple(plugins)
    if "models" in data:
        models = data["models"]
        if not isinstance(models, dict) or not all(
            isinstance(v, str) and v.strip() for v in models.values()
        ):
            raise UserError(f"settings file {path}: [models] must map component names to ids")
        values["models"] = dict(models)
    return values


def _from_env(env: dict[str, str], models: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in _SCALAR_KEYS:
        name = f"STNLP_{key.upper()}"
        if name in env:
            values[key] = check_setting(key, env[name], name)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):  # AWS_DEFAULT_REGION: what the AWS CLI reads
        if "region" not in values and env.get(name):
            values["region"] = check_setting("region", env[name], name)
    if "STNLP_DISABLED_PLUGINS" in env:
        names = env["STNLP_DISABLED_PLUGINS"].split(",")
        values["disabled_plugins"] = tuple(n.strip() for n in names if n.strip())
    overrides = {}
    for name, value in env.items():
        if name.startswith("STNLP_MODEL_"):
            component = name.removeprefix("STNLP_MODEL_").lower().replace("_", "-")
            if not component or not value.strip():
                raise UserError(
                    f"{name}={value!r}: expected STNLP_MODEL_<COMPONENT>=<hub model id>"
                )
            overrides[component] = value
    if overrides:
        values["models"] = {**models, **overrides}
    return values


def load_settings(env: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the settings file (if any) and the environment into one :class:`Settings`."""
    env = dict(os.environ if env is None else env)
    cwd = cwd or Path.cwd()
    values: dict[str, Any] = {}
    source = "defaults"
    if "STNLP_SETTINGS" in env:
        path = Path(env["STNLP_SETTINGS"])
        values.update(_from_file(path))
        source = str(path)
    elif (cwd / "stnlp.toml").exists():
        values.update(_from_file(cwd / "stnlp.toml"))
        source = str(cwd / "stnlp.toml")
    values.update(_from_env(env, values.get("models", {})))
    return Settings(source=source, **values)
