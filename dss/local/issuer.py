"""The development OpenID issuer of the local stack.

The issuer is a directory served by a static file server:

    <issuer_dir>/private_key.pem                       RSA 2048 signing key (kept across restarts)
    <issuer_dir>/public/.well-known/openid-configuration
    <issuer_dir>/public/.well-known/jwks.json

`ensure_key` creates the key once; `write_public_files` (re)writes the two public documents for the
issuer URL of the current run; `mint_token` signs tokens that the API accepts when OPENID_PROVIDER
points at this issuer.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import time
import typing

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import Settings

logger = logging.getLogger(__name__)

PRIVATE_KEY_FILE = "private_key.pem"
PUBLIC_DIR = "public"
WELL_KNOWN = ".well-known"
OPENID_CONFIGURATION = "openid-configuration"
JWKS_FILE = "jwks.json"

# The defaults are the API's (dss.config.Settings), so a development token passes its checks.
DEFAULT_EMAIL_CLAIM = Settings.email_claim
DEFAULT_GROUP_CLAIM = Settings.group_claim
DEFAULT_AUDIENCE = Settings.oidc_audience[0]


class IssuerNotInitialized(RuntimeError):
    """The issuer's signing key does not exist: the local stack has never been started here."""


def issuer_dir(root: pathlib.Path | str) -> pathlib.Path:
    """The issuer directory for `root`, which may be the stack root or the issuer directory itself."""
    root = pathlib.Path(root)
    if (root / "issuer").is_dir() or not (root / PRIVATE_KEY_FILE).exists():
        return root / "issuer"
    return root


def ensure_key(directory: pathlib.Path) -> rsa.RSAPrivateKey:
    """Load the signing key from `directory`, generating it on first use."""
    path = directory / PRIVATE_KEY_FILE
    if path.exists():
        return _load_key(path)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Write then rename, so a concurrent reader never sees a half-written key.
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o600)
    tmp.replace(path)
    logger.info("Generated the development issuer key %s", path)
    return key


def _load_key(path: pathlib.Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} is not an RSA private key")
    return key


def key_id(key: rsa.RSAPrivateKey) -> str:
    """A stable `kid`: derived from the public key, so it survives restarts with the key."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def jwks(key: rsa.RSAPrivateKey) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=key_id(key), use="sig", alg="RS256")
    return {"keys": [jwk]}


def openid_configuration(issuer_url: str) -> dict:
    base = issuer_url.rstrip("/")
    return {
        "issuer": base + "/",
        "jwks_uri": f"{base}/{WELL_KNOWN}/{JWKS_FILE}",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "email", "offline_access"],
    }


def write_public_files(directory: pathlib.Path, issuer_url: str) -> pathlib.Path:
    """Create the key if needed and write the served documents; returns the directory to serve."""
    key = ensure_key(directory)
    public = directory / PUBLIC_DIR
    well_known = public / WELL_KNOWN
    well_known.mkdir(parents=True, exist_ok=True)
    # Rewritten on every start: the issuer URL contains the port, which may change between runs.
    (well_known / OPENID_CONFIGURATION).write_text(json.dumps(openid_configuration(issuer_url), indent=2))
    (well_known / JWKS_FILE).write_text(json.dumps(jwks(key), indent=2))
    return public


def mint_token(root: pathlib.Path | str,
               email: str,
               group: str,
               *,
               audience: str | None = None,
               issuer: str | None = None,
               email_claim: str | None = None,
               group_claim: str | None = None,
               expires_in: int = 3600,
               extra_claims: dict[str, typing.Any] | None = None) -> str:
    """Sign an RS256 token with the development issuer's key.

    `root` is the stack root (or its issuer directory). Unset keyword arguments come from the
    environment: OIDC_AUDIENCE (first entry), OPENID_PROVIDER, OIDC_EMAIL_CLAIM, OIDC_GROUP_CLAIM.
    """
    path = issuer_dir(root) / PRIVATE_KEY_FILE
    if not path.exists():
        raise IssuerNotInitialized(f"No development issuer key at {path}; start the local stack first "
                                   "(`make run` or `python -m dss.local.stack run`).")
    key = _load_key(path)
    audience = audience or default_audience()
    # Read raw, not from Settings: Settings defaults it to the real issuer, and a development token must never be
    # minted for that; unset means the local stack is not configured.
    issuer = issuer or os.environ.get("OPENID_PROVIDER")
    if not issuer:
        raise ValueError("No issuer given and OPENID_PROVIDER is not set")
    settings = Settings.from_env()
    email_claim = email_claim or settings.email_claim
    group_claim = group_claim or settings.group_claim
    now = int(time.time())
    claims: dict[str, typing.Any] = {
        "iss": issuer,
        "sub": email,
        "aud": audience,
        "iat": now,
        "exp": now + int(expires_in),
        "email": email,
        email_claim: email,
        group_claim: group,
        "scope": ["email", "openid", "offline_access"],
    }
    claims.update(extra_claims or {})
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": key_id(key)})


def default_audience() -> str:
    """The first entry of the comma-separated OIDC_AUDIENCE."""
    return next(iter(Settings.from_env().oidc_audience), DEFAULT_AUDIENCE)
