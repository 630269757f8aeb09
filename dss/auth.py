"""Bearer-token verification: RS256 JWTs from the configured OpenID issuer or from Google service accounts."""
from __future__ import annotations

import logging
import threading
import types

import jwt
import requests

from .config import Settings
from .errors import DSSError

logger = logging.getLogger(__name__)

_INVALID = "Authorization token is invalid"


def _unauthorized(title: str) -> DSSError:
    return DSSError(401, "Unauthorized", title)


class TokenVerifier:
    """Checks signature (by `kid`), issuer, audience, expiry and the email claim; JWKS are cached per URL."""

    def __init__(self, settings: Settings, http: requests.Session | None = None):
        self.settings = settings
        self._http = http or requests.Session()
        self._clients: dict[str, jwt.PyJWKClient] = {}
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as e:
            raise _unauthorized("Failed to decode token.") from e
        if header.get("alg") != "RS256":
            raise _unauthorized(_INVALID)
        issuer = unverified.get("iss", "")
        jwks_url = self._jwks_url(issuer, unverified)
        try:
            # No kid is passed on as None: PyJWT then matches a JWKS key without one, whatever its annotation says.
            key = self._client(jwks_url).get_signing_key(header.get("kid"))  # type: ignore[arg-type]
            claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=list(self.settings.oidc_audience),
                                issuer=issuer, options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, jwt.PyJWKClientError) as e:
            logger.info("rejected token from %s: %s", issuer, e)
            raise _unauthorized(_INVALID) from e
        email = claims.get(self.settings.email_claim) or claims.get("email")
        if not email:
            raise _unauthorized("Authorization token is missing email claims.")
        group = claims.get(self.settings.group_claim)
        # connexion hands `scope` to check_groups: the groups, in place of any OAuth scopes the token carries.
        return {**claims, "email": email, "group": group, "scope": _groups(group), "sub": claims.get("sub", email)}

    def _jwks_url(self, issuer: str, claims: dict) -> str:
        if _same_issuer(issuer, self.settings.openid_provider):
            return _discover_jwks_uri(self._http, issuer)
        email = claims.get("email") or claims.get("sub") or ""
        domain = email.rpartition("@")[2]
        if issuer and issuer == claims.get("sub") and domain in self.settings.authorized_domains:
            return self.settings.service_account_jwks_url.format(email=issuer)
        raise DSSError(403, "Forbidden", "The token's issuer is not trusted.")

    def _client(self, url: str) -> jwt.PyJWKClient:
        with self._lock:
            if url not in self._clients:
                self._clients[url] = jwt.PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=10)
            return self._clients[url]


def _same_issuer(a: str, b: str) -> bool:
    return bool(a) and a.rstrip("/") == b.rstrip("/")


# The discovery document rarely changes; the JWKS client refreshes keys on its own.
_discovered: dict[str, str] = {}


def _discover_jwks_uri(http: requests.Session, issuer: str) -> str:
    cached = _discovered.get(issuer)
    if cached:
        return cached
    try:
        r = http.get(issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10)
        r.raise_for_status()
        uri = r.json()["jwks_uri"]
    except (requests.RequestException, ValueError, KeyError) as e:
        logger.error("cannot discover the JWKS of %s: %s", issuer, e)
        raise DSSError(503, "service_unavailable", "The token issuer cannot be reached.") from e
    _discovered[issuer] = uri
    return uri


def _groups(group) -> list[str]:
    """The group claim as a list: one group (a string), several (a list), or none."""
    if isinstance(group, str):
        return [group]
    if isinstance(group, list):
        return [g for g in group if isinstance(g, str)]
    return []


def check_groups(required_scopes, token_groups) -> bool:
    """connexion's x-scopeValidateFunc: the operation's scopes in the spec are the groups it admits, and the
    token's `scope` (set by TokenVerifier.verify) its groups; one in common is enough. Runs before validation and
    the handler, for every secured operation, so no handler checks groups itself."""
    admitted = set(required_scopes or ())
    if not admitted:
        # A secured operation must name its groups; failing closed keeps an omission from opening it to all.
        logger.error("a secured operation admits no group: refused")
    if not admitted & set(token_groups if isinstance(token_groups, list) else ()):
        raise DSSError(403, "Forbidden", "User is not authorized to access this resource")
    return True


# connexion finds token checkers by dotted name, so each app registers its own verifier here by a unique name.
verifiers = types.SimpleNamespace()


def register_verifier(verifier: TokenVerifier) -> str:
    name = f"app{len(vars(verifiers))}"
    setattr(verifiers, name, verifier.verify)
    return f"{__name__}.verifiers.{name}"
