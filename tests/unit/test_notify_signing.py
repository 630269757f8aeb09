"""Notification signatures: what requests-http-signature 0.1.0 makes and checks, and the draft itself."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
import requests
import requests_http_signature as library

from dss.notify.signing import key_id_of, signature_headers

KEY = b"a shared secret"
BODY = b'{"transaction_id": "t"}'


def verify_cavage(headers: dict[str, str], body: bytes, key: bytes) -> str:
    """Verify an hmac-sha256 draft-cavage signature from the draft's text, not from any implementation.

    Returns the keyId. Checks the signature over the listed headers and the body's SHA-256 Digest.
    """
    headers = {k.lower(): v for k, v in headers.items()}
    scheme, _, params = headers["authorization"].partition(" ")
    assert scheme == "Signature"
    fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
    assert fields["algorithm"] == "hmac-sha256"
    signed = fields.get("headers", "date").split(" ")
    assert {"date", "digest"} <= set(signed)
    lines = "\n".join(f"{name}: {headers[name]}" for name in signed).encode()
    expected = hmac.new(key, lines, hashlib.sha256).digest()
    assert hmac.compare_digest(base64.b64decode(fields["signature"]), expected), "bad signature"
    assert headers["digest"] == "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode(), "bad digest"
    return fields["keyId"]


def prepared(headers: dict, body: bytes = BODY) -> requests.PreparedRequest:
    return requests.Request("POST", "https://subscriber.example.org/hook", headers=headers, data=body).prepare()


def test_independent_verification_accepts_ours_and_rejects_tampering():
    headers = signature_headers(BODY, KEY, "hca-dss:sub")
    assert verify_cavage(headers, BODY, KEY) == "hca-dss:sub"
    with pytest.raises(AssertionError, match="digest"):
        verify_cavage(headers, BODY + b" ", KEY)
    with pytest.raises(AssertionError, match="signature"):
        verify_cavage(headers, BODY, b"another key")
    with pytest.raises(AssertionError, match="signature"):
        verify_cavage({**headers, "Date": "Thu, 01 Jan 1970 00:00:00 GMT"}, BODY, KEY)


def test_the_library_makes_the_same_headers():
    ours = signature_headers(BODY, KEY, "key-1", timestamp=1_500_000_000)
    request = prepared({"Date": ours["Date"]})
    library.HTTPSignatureAuth(key=KEY, key_id="key-1")(request)
    assert {k: request.headers[k] for k in ("Date", "Digest", "Authorization")} == ours


def test_the_library_verifies_ours():
    request = prepared(signature_headers(BODY, KEY, "key-2"))
    seen = []

    def resolve(key_id, algorithm):
        seen.append((key_id, algorithm))
        return KEY

    library.HTTPSignatureAuth.verify(request, key_resolver=resolve)
    assert seen == [("key-2", "hmac-sha256")]
    with pytest.raises(AssertionError):
        library.HTTPSignatureAuth.verify(request, key_resolver=lambda **_: b"wrong")


def test_key_id_defaults_to_the_subscription():
    assert key_id_of("1234", None) == "hca-dss:1234"
    assert key_id_of("1234", "") == "hca-dss:1234"
    assert key_id_of("1234", "mine") == "mine"
