"""HTTP signatures of notifications, as `requests-http-signature` 0.1.0 makes them with its defaults.

That is draft-cavage-http-signatures with `hmac-sha256`: a `Date` header, a `Digest: SHA-256=<base64>` of the
body, and `Authorization: Signature keyId="…",algorithm="hmac-sha256",headers="date digest",signature="…"`,
where the signature is the base64 HMAC-SHA256 of the lines `date: <Date>` and `digest: <Digest>` joined by a
newline. Subscribers of the original DSS verify with `HTTPSignatureAuth.verify`, which checks only the signature:
they should also compare the Digest with the body they received.
"""
from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac

ALGORITHM = "hmac-sha256"
SIGNED_HEADERS = ("date", "digest")


def key_id_of(subscription_uuid: str, hmac_key_id: str | None) -> str:
    return hmac_key_id or f"hca-dss:{subscription_uuid}"


def body_digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def string_to_sign(headers: dict[str, str]) -> bytes:
    return "\n".join(f"{name}: {headers[name.title()]}" for name in SIGNED_HEADERS).encode()


def signature_headers(body: bytes, key: bytes, key_id: str, *, timestamp: float | None = None) -> dict[str, str]:
    """The Date, Digest and Authorization headers that sign a request with this body."""
    headers = {"Date": email.utils.formatdate(timestamp, usegmt=True), "Digest": body_digest(body)}
    signature = base64.b64encode(hmac.new(key, string_to_sign(headers), hashlib.sha256).digest()).decode()
    fields = {"keyId": key_id, "algorithm": ALGORITHM, "headers": " ".join(SIGNED_HEADERS), "signature": signature}
    headers["Authorization"] = "Signature " + ",".join(f'{k}="{v}"' for k, v in fields.items())
    return headers
