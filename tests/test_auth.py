"""Bearer-token checks: every way a token can be wrong (on PUT /files), and the groups of every secured operation."""
from __future__ import annotations

import time

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dss.app import SPEC_PATH

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


# --- groups: every secured operation of the served spec ----------------------------------------------------------

def _secured_operations(api) -> list[tuple[str, str, dict]]:
    paths = api.request("GET", "/v1/swagger.json").json()["paths"]
    return [(path, method, op) for path, ops in paths.items() for method, op in ops.items()
            if isinstance(op, dict) and op.get("security")]


def _admitted(op: dict) -> set[str]:
    return {group for requirement in op["security"] for group in requirement.get("dcpAuth", [])}


def test_every_secured_operation_names_its_groups(api):
    """The groups live in one place, the spec: what each operation admits, as the contract's table says."""
    admitted = {(path, method): _admitted(op) for path, method, op in _secured_operations(api)}
    subscriptions = {(p, m) for p, m in admitted if p.startswith("/subscriptions")}
    assert len(admitted) == 13 and len(subscriptions) == 4
    for key, groups in admitted.items():
        assert groups == ({"hca", "public"} if key in subscriptions else {"hca"}), key


def _call_with_group(api, path: str, method: str, op: dict, group: str):
    """The operation with the group's token and plausible parameters; the group check comes first, so a body the
    handler would refuse still meets the 403."""
    uuid, version = "ce55fd51-7833-469b-be0b-5da88ebebfcd", "2017-06-16T193604.240704Z"
    values = {"replica": "aws", "version": version, "uuid": uuid}
    params = {p["name"]: values[p["name"]] for p in op.get("parameters", [])
              if p.get("in") == "query" and p.get("required")}
    body = {"reason": "x", "files": [], "creator_uid": 1} if any(p.get("in") == "body" for p in
                                                                 op.get("parameters", [])) else None
    return api.request(method.upper(), "/v1" + path.replace("{uuid}", uuid), params=params, json=body,
                       auth=api.auth(email="outsider@example.org", group=group))


SPEC = yaml.safe_load(SPEC_PATH.read_text())
SECURED = [(path, method) for path, ops in SPEC["paths"].items() for method, op in ops.items()
           if isinstance(op, dict) and op.get("security")]


@pytest.mark.parametrize("path, method", SECURED, ids=[f"{m.upper()} {p}" for p, m in SECURED])
def test_a_group_an_operation_does_not_admit_is_forbidden(api, path, method):
    """Each secured operation refuses a token of a group it does not list: `public` for the hca-only ones (every
    write of files and bundles, every collection operation), any other group for the subscriptions."""
    op = api.request("GET", "/v1/swagger.json").json()["paths"][path][method]
    group = "someone" if "public" in _admitted(op) else "public"
    body = assert_problem(_call_with_group(api, path, method, op, group), 403, "Forbidden")
    assert body["title"] == "User is not authorized to access this resource"


def test_public_may_manage_subscriptions(api):
    r = api.request("GET", "/v1/subscriptions", params={"replica": "aws"}, auth=api.auth(group="public"))
    assert r.status_code == 200, r.text


def test_a_list_of_groups_is_admitted_by_any_member(api, put_with):
    assert put_with(api.auth(group=["public", "hca"])).status_code == 201
    assert_problem(put_with(api.auth(group=["public", "other"])), 403, "Forbidden")
