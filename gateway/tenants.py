"""The tenants file: who may call the server, with which key, how often and on which models.

A JSON file, safe to keep in git: each tenant has a name, the sha256 of its key (never the key), requests per
minute with a burst, concurrent streams and the models it may use. `add_tenant` makes a random key, stores
its hash and returns the key once: whoever runs it hands the key to the tenant.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from i2v.params import LORA_LIST_MODEL, MODEL_NAME

# Models that come with another: a tenant of the video model may list its LoRA adapters (the UI does).
COMPANION_MODELS = {MODEL_NAME: (LORA_LIST_MODEL,)}

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # also an nginx zone and variable name
HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")


class TenantsFileError(ValueError):
    """The tenants file, or a change to it, is invalid; the message names the tenant and the field."""


@dataclass(frozen=True)
class Tenant:
    name: str
    key_sha256: str
    requests_per_minute: int = 30
    burst: int = 5  # requests above the rate accepted at once, before refusals start
    max_streams: int = 2  # generations in flight at once
    models: tuple[str, ...] = field(default=(MODEL_NAME,))

    def check(self) -> Tenant:
        """Raise `TenantsFileError` naming the first bad field."""
        where = f"tenant {self.name!r}"
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise TenantsFileError(f"{where}: name must match {NAME_PATTERN.pattern} (lower case, digits, _)")
        if not isinstance(self.key_sha256, str) or not HASH_PATTERN.match(self.key_sha256):
            raise TenantsFileError(f"{where}: key_sha256 must be 64 lower-case hex digits (sha256 of the key)")
        for name in ("requests_per_minute", "burst", "max_streams"):
            value = getattr(self, name)
            low = 0 if name == "burst" else 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 100_000:
                raise TenantsFileError(f"{where}: {name} must be an integer from {low} to 100000, got {value!r}")
        if not self.models or not all(isinstance(m, str) and re.match(r"^[A-Za-z0-9_.-]+$", m) for m in self.models):
            raise TenantsFileError(f"{where}: models must be a non-empty list of model names, got {self.models!r}")
        return self

    @property
    def allowed_models(self) -> tuple[str, ...]:
        """`models` and the models that come with them (`COMPANION_MODELS`), each once."""
        names = [n for m in self.models for n in (m, *COMPANION_MODELS.get(m, ()))]
        return tuple(dict.fromkeys(names))

    @property
    def retry_after_s(self) -> int:
        """Seconds until the rate lets one more request in (what a refusal tells the client)."""
        return max(1, math.ceil(60 / self.requests_per_minute))


def key_hash(key: str) -> str:
    """What the tenants file stores of a key; the gateway computes the same of the key a request presents."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """256 random bits, URL-safe, never beginning with "-": `--api-key "$KEY"` would read such a key as an option."""
    return "i2v_" + secrets.token_urlsafe(32)


def load_tenants(path: Path) -> list[Tenant]:
    """Read and check every tenant; names and key hashes must be unique."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TenantsFileError(f"tenants file not found: {path}") from None
    except UnicodeDecodeError:
        raise TenantsFileError(f"{path} is not a UTF-8 text file (JSON)") from None
    except json.JSONDecodeError as exc:
        raise TenantsFileError(f"{path} is not valid JSON: {exc}") from None
    except OSError as exc:  # a folder, unreadable
        raise TenantsFileError(f"cannot read the tenants file {path}: {exc.strerror or exc}") from None
    entries = document.get("tenants") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise TenantsFileError(f'{path} must hold {{"tenants": [...]}}')
    known = {f.name for f in Tenant.__dataclass_fields__.values()}
    tenants = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise TenantsFileError(f"{path}: each tenant must be an object, got {entry!r}")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise TenantsFileError(f"tenant {entry.get('name')!r}: unknown fields {', '.join(unknown)}")
        missing = [name for name in ("name", "key_sha256") if name not in entry]
        if missing:
            raise TenantsFileError(f"tenant {entry.get('name')!r}: missing {', '.join(missing)}")
        models = entry.get("models", [MODEL_NAME])
        if not isinstance(models, list):  # a string would pass as its letters
            name = entry.get("name")
            raise TenantsFileError(f"tenant {name!r}: models must be a list of model names, got {models!r}")
        tenants.append(Tenant(**{**entry, "models": tuple(models)}).check())
    _check_unique(tenants)
    return tenants


def save_tenants(path: Path, tenants: list[Tenant]) -> None:
    _check_unique(tenants)
    records = [{**asdict(t.check()), "models": list(t.models)} for t in tenants]
    try:
        Path(path).write_text(json.dumps({"tenants": records}, indent=2) + "\n")
    except OSError as exc:  # no such folder, read-only
        raise TenantsFileError(f"cannot write the tenants file {path}: {exc.strerror or exc}") from None


def add_tenant(path: Path, tenant_name: str, **limits) -> str:
    """Add a tenant with a new random key (the file is created if absent); returns the key, stored nowhere."""
    path = Path(path)
    tenants = load_tenants(path) if path.exists() else []
    key = new_key()
    save_tenants(path, [*tenants, Tenant(tenant_name, key_hash(key), **limits).check()])
    return key


def remove_tenant(path: Path, tenant_name: str) -> None:
    tenants = load_tenants(path)
    if tenant_name not in {t.name for t in tenants}:
        names = ", ".join(t.name for t in tenants) or "none (add one: i2v gateway add-tenant NAME)"
        raise TenantsFileError(f"no tenant {tenant_name!r} in {path}; tenants: {names}")
    save_tenants(path, [t for t in tenants if t.name != tenant_name])


def check_tenants(tenants: list[Tenant]) -> None:
    """Every tenant valid, names and key hashes distinct; else `TenantsFileError` naming the problem."""
    for tenant in tenants:
        tenant.check()
    _check_unique(tenants)


def _check_unique(tenants: list[Tenant]) -> None:
    for what in ("name", "key_sha256"):
        values = [getattr(t, what) for t in tenants]
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            shown = repeated if what == "name" else [t.name for t in tenants if t.key_sha256 in repeated]
            raise TenantsFileError(f"tenants must have distinct {what}s; repeated: {', '.join(shown)}")
