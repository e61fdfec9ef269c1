"""Who may call the prediction API: the keys in ``PRICEBOT_API_KEYS``.

A request proves it holds a key with the header ``X-API-Key: <key>`` or, for clients that only
speak OAuth-style tokens, ``Authorization: Bearer <key>``. Several keys may be configured at once
(comma separated) so that a key can be rotated with overlap: add the new one, move the clients,
remove the old one.

The comparison is constant-time: both the presented key and each configured key are hashed
(SHA-256) and compared with :func:`hmac.compare_digest` against every configured key, so neither
the time taken nor an early exit says how much of a key was right, or which key matched.

Without keys the API is open (for a local run); the service then says so loudly at start, and a
deployment sets ``PRICEBOT_REQUIRE_API_KEY=true`` (the Bento does) so that a missing key stops
the service instead of opening it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from pricebot.errors import ServiceConfigError
from pricebot.settings import Settings

API_KEY_HEADER = "X-API-Key"
_API_KEY = API_KEY_HEADER.lower().encode()
_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "

#: Routes anyone may call: health for the load balancer and orchestrator, the docs page and the
#: spec (so a client can learn how to authenticate), and the page's static files.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/", "/docs.json"})
OPEN_PREFIXES = ("/static_content/",)

MISSING = (
    f"This API needs a key: send it in the {API_KEY_HEADER} header "
    "(or as Authorization: Bearer <key>)."
)
WRONG = (
    f"The API key sent is not valid: send a current key in the {API_KEY_HEADER} header "
    "(or as Authorization: Bearer <key>)."
)


class ApiKeys:
    """The accepted keys, kept only as SHA-256 digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(key.encode()) for key in keys if key)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        """The configured keys; refuses an empty set when a key is required."""
        keys = cls(key.get_secret_value() for key in settings.api_keys)
        if settings.require_api_key and not keys.enabled:
            raise ServiceConfigError(
                "PRICEBOT_REQUIRE_API_KEY is true but PRICEBOT_API_KEYS is empty: the service "
                "will not start with an open API. Set PRICEBOT_API_KEYS to one or more keys "
                "(comma separated), e.g. from `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`."
            )
        return keys

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """None when the request may pass, else the message for its 401."""
        if not self._digests:
            return None
        presented = _presented_key(headers)
        if presented is None:
            return MISSING
        digest = _digest(presented)
        matched = False
        for known in self._digests:  # no early exit: every key costs the same
            matched |= hmac.compare_digest(digest, known)
        return None if matched else WRONG


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    bearer = None
    for name, value in headers:
        name = name.lower()
        if name == _API_KEY:
            return value.strip()
        if name == _AUTHORIZATION and value[:7].lower() == _BEARER:
            bearer = value[7:].strip()
    return bearer or None


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()
