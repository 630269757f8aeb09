"""Bearer-token checks on PUT /files: every way a token can be wrong."""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .helpers import assert_problem


@pytest.fixture
def put_with(api, stager, new_uuid, version):
    source = stager.stage("aws", b"auth test")

    def put(headers):
        return api.request("PUT", f"/v1/files/{new_uuid()}", params={"version": version}, auth=headers,
                           json={"source_url": source, "creator_uid": 1})
    return put


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_valid_token_is_accepted(api, put_with):
    assert put_with(api.auth()).status_code == 201


def test_missing_token(put_with):
    body = assert_problem(put_with({}), 401, "OAuthProblem")
    assert "No authorization token" in body["title"]


def test_undecodable_token(put_with):
    body = assert_problem(put_with(_bearer("gibberish")), 401, "Unauthorized")
    assert body["title"] == "Failed to decode token."


def test_expired_token(api, put_with):
    assert_problem(put_with(api.auth(expires_in=-10)), 401, "Unauthorized")


def test_wrong_audience(api, put_with):
    from dss.local.issuer import mint_token
    s = api.settings
    token = mint_token(api.stack.root, "dev@example.org", "hca", audience="https://elsewhere.example/",
                       issuer=s.openid_provider, email_claim=s.email_claim, group_claim=s.group_claim)
    assert_problem(put_with(_bearer(token)), 401, "Unauthorized")


def test_alg_none_is_rejected(api, put_with):
    s = api.settings
    claims = {"iss": s.openid_provider, "aud": s.oidc_audience[0], "exp": int(time.time()) + 600,
              "sub": "x", "email": "dev@example.org", s.group_claim: "hca", s.email_claim: "dev@example.org"}
    token = jwt.encode(claims, key=None, algorithm="none")
    assert_problem(put_with(_bearer(token)), 401, "Unauthorized")


def test_hs256_with_the_public_key_is_rejected(api, put_with):
    s = api.settings
    claims = {"iss": s.openid_provider, "aud": s.oidc_audience[0], "exp": int(time.time()) + 600,
              "email": "dev@example.org", s.group_claim: "hca"}
    token = jwt.encode(claims, key="a shared secret of reasonable length!!", algorithm="HS256")
    assert_problem(put_with(_bearer(token)), 401, "Unauthorized")


def test_token_signed_by_another_key_is_rejected(api, put_with):
    s = api.settings
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    kid = jwt.get_unverified_header(api.token())["kid"]
    claims = {"iss": s.openid_provider, "aud": s.oidc_audience[0], "exp": int(time.time()) + 600,
              "email": "dev@example.org", s.group_claim: "hca"}
    token = jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid})
    assert_problem(put_with(_bearer(token)), 401, "Unauthorized")


def test_untrusted_issuer_is_forbidden(api, put_with):
    from dss.local.issuer import mint_token
    s = api.settings
    token = mint_token(api.stack.root, "dev@example.org", "hca", audience=s.oidc_audience[0],
                       issuer="https://issuer.invalid/", email_claim=s.email_claim, group_claim=s.group_claim)
    assert_problem(put_with(_bearer(token)), 403, "Forbidden")


def test_wrong_group_is_forbidden(api, put_with):
    body = assert_problem(put_with(api.auth(group="someone")), 403, "Forbidden")
    assert body["title"] == "User is not authorized to access this resource"


def test_missing_email_claim(api, put_with):
    from dss.local.issuer import mint_token
    s = api.settings
    token = mint_token(api.stack.root, "", "hca", audience=s.oidc_audience[0], issuer=s.openid_provider,
                       email_claim=s.email_claim, group_claim=s.group_claim)
    assert_problem(put_with(_bearer(token)), 401, "Unauthorized")


def test_reads_need_no_token(api, new_uuid):
    r = api.request("HEAD", f"/v1/files/{new_uuid()}", params={"replica": "aws"})
    assert r.status_code == 404


def test_google_service_account_tokens(api, in_process, stager, new_uuid, version):
    """A service account of an authorized domain signs its own tokens (iss == sub); its JWKS is per account."""
    from dss.local.issuer import mint_token
    s = api.settings
    account = "uploader@dss-test.iam.gserviceaccount.com"
    # The development issuer's JWKS stands in for Google's per-account JWKS endpoint.
    jwks = s.openid_provider.rstrip("/") + "/.well-known/jwks.json?account={email}"
    token = mint_token(api.stack.root, account, "hca", audience=s.oidc_audience[0], issuer=account,
                       email_claim=s.email_claim, group_claim=s.group_claim, extra_claims={"sub": account})
    source = stager.stage("aws", b"service account")

    def put(client):
        return client.put(f"/v1/files/{new_uuid()}", params={"version": version}, headers=_bearer(token),
                          json={"source_url": source, "creator_uid": 1})

    trusted = in_process(authorized_domains=("dss-test.iam.gserviceaccount.com",), service_account_jwks_url=jwks)
    untrusted = in_process(authorized_domains=("elsewhere.iam.gserviceaccount.com",),
                           service_account_jwks_url=jwks)
    assert put(trusted).status_code == 201  # built first: each app checks tokens with its own settings
    r = put(untrusted)
    assert (r.status_code, r.json()["code"]) == (403, "Forbidden")
