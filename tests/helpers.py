"""Small clients the tests share."""
from __future__ import annotations

import requests

from dss.config import Settings


class ApiClient:
    """requests against the API under test, with development tokens minted on demand."""

    def __init__(self, base_url: str, stack, settings: Settings):
        self.base_url = base_url
        self.stack = stack
        self.settings = settings
        self.session = requests.Session()

    def token(self, email: str = "dev@example.org", group: str = "hca", **kwargs) -> str:
        from dss.local.issuer import mint_token
        return mint_token(self.stack.root, email, group, audience=self.settings.oidc_audience[0],
                          issuer=self.settings.openid_provider, email_claim=self.settings.email_claim,
                          group_claim=self.settings.group_claim, **kwargs)

    def auth(self, **kwargs) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(**kwargs)}"}

    def request(self, method: str, path: str, *, auth: bool | dict = False, headers=None, **kwargs):
        headers = dict(headers or {})
        if auth is True:
            headers.update(self.auth())
        elif isinstance(auth, dict):
            headers.update(auth)
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 300)
        return self.session.request(method, self.base_url + path, headers=headers, **kwargs)

    def put_file(self, uuid: str, version: str | None, source_url: str, creator_uid: int = 4321, **kwargs):
        params = {} if version is None else {"version": version}
        return self.request("PUT", f"/v1/files/{uuid}", params=params, auth=kwargs.pop("auth", True),
                            json={"source_url": source_url, "creator_uid": creator_uid}, **kwargs)


def assert_problem(response, status: int, code: str):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["title"], str) and body["title"]
    assert "stacktrace" in body
    return body


def seed_file_metadata(replicas, replica: str, count: int, *, version: str, prefix: str = "f") -> list[dict]:
    """Write `count` file metadata documents straight into a replica (scale tests skip the per-file copy).

    They are real objects in the real store, read back by the API exactly as files made by PUT /files are.
    """
    import concurrent.futures
    import json
    import uuid as uuidlib

    from dss.checksums import compute_checksums_of_bytes
    from dss.file_metadata import file_metadata_document
    from dss.identifiers import file_key

    rs = replicas[replica]
    checksums = compute_checksums_of_bytes(b"seeded")
    entries = [{"uuid": str(uuidlib.uuid4()), "version": version, "name": f"{prefix}{i:06d}.bin", "indexed": False}
               for i in range(count)]
    body = json.dumps(file_metadata_document(checksums, size=6, content_type="application/octet-stream",
                                             creator_uid=1, version=version)).encode()

    def write(entry):
        rs.store.put(rs.bucket, file_key(entry["uuid"], version), body, content_type="application/json")

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(write, entries))
    return entries
