"""PUT, GET, find and DELETE /subscriptions: both kinds, both replicas, ownership, the limit and validation."""
from __future__ import annotations

import uuid as uuidlib

import pytest

from dss.identifiers import is_version
from dss.index.backend import SearchBackend
from dss.notify.subscriptions import KINDS, LIMIT, SubscriptionStore

from .helpers import assert_problem

ES_QUERY = {"query": {"bool": {"must": [{"match": {"files.donor_organism_json.sex": "female"}}]}}}


class Subscriber:
    """One user of the API with a fresh email; every subscription made through it is deleted afterwards."""

    def __init__(self, api, settings, group="hca"):
        self.api, self.settings = api, settings
        self.email = f"{uuidlib.uuid4().hex[:12]}@example.org"
        self.headers = api.auth(email=self.email, group=group)

    def put(self, replica: str, body: dict):
        return self.api.request("PUT", "/v1/subscriptions", params={"replica": replica}, json=body,
                                auth=self.headers)

    def request(self, method: str, uuid: str | None, replica: str, kind: str | None = None):
        params = {"replica": replica, **({"subscription_type": kind} if kind else {})}
        path = "/v1/subscriptions" + (f"/{uuid}" if uuid else "")
        return self.api.request(method, path, params=params, auth=self.headers)

    def cleanup(self) -> None:
        store = SubscriptionStore(self.settings.subscriptions_table)
        for replica in ("aws", "gcp"):
            for kind in KINDS:
                for s in store.of_owner(self.email, replica, kind):
                    store.delete(s.owner, s.uuid)


@pytest.fixture
def subscribers(api, settings):
    made = []

    def make(**kwargs) -> Subscriber:
        made.append(Subscriber(api, settings, **kwargs))
        return made[-1]
    yield make
    for subscriber in made:
        subscriber.cleanup()


def body(**extra) -> dict:
    return {"callback_url": "https://example.org/hook", "hmac_secret_key": "s3cret", "hmac_key_id": "k1", **extra}


def test_jmespath_subscription_lifecycle(subscribers, replica):
    me = subscribers()
    r = me.put(replica, body(jmespath_query="event_type=='CREATE'", method="PUT"))
    assert r.status_code == 201, r.text
    created = r.json()
    uuid = created["uuid"]
    # The whole stored document, as the original answered, but never the secret.
    assert created == {"callback_url": "https://example.org/hook", "hmac_key_id": "k1", "method": "PUT",
                       "jmespath_query": "event_type=='CREATE'", "owner": me.email, "uuid": uuid, "replica": replica}
    assert me.request("GET", uuid, replica).json() == created
    assert me.request("GET", uuid, replica, "jmespath").json() == created
    assert me.request("GET", None, replica).json() == {"subscriptions": [created]}
    assert me.request("GET", None, replica, "elasticsearch").json() == {"subscriptions": []}
    other_replica = "gcp" if replica == "aws" else "aws"
    assert me.request("GET", None, other_replica).json() == {"subscriptions": []}
    assert_problem(me.request("GET", uuid, other_replica), 404, "not_found")
    assert_problem(me.request("GET", uuid, replica, "elasticsearch"), 404, "not_found")
    r = me.request("DELETE", uuid, replica)
    assert r.status_code == 200 and is_version(r.json()["timeDeleted"])
    assert_problem(me.request("GET", uuid, replica), 404, "not_found")
    assert_problem(me.request("DELETE", uuid, replica), 404, "not_found")


def test_elasticsearch_subscription_lifecycle(subscribers, replica, settings):
    me = subscribers(group="public")
    r = me.put(replica, body(es_query=ES_QUERY, attachments={"sex": {"type": "jmespath", "expression": "files"}}))
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"uuid"}  # the original answered only the uuid
    uuid = r.json()["uuid"]
    got = me.request("GET", uuid, replica, "elasticsearch").json()
    assert got["uuid"] == uuid and got["replica"] == replica and got["owner"] == me.email
    assert got["es_query"] == ES_QUERY and "hmac_secret_key" not in got
    assert me.request("GET", None, replica, "elasticsearch").json() == {"subscriptions": [got]}
    assert_problem(me.request("GET", uuid, replica), 404, "not_found")  # the default type is jmespath
    stored = SubscriptionStore(settings.subscriptions_table).get(me.email, uuid)
    assert stored.document["hmac_secret_key"] == "s3cret"  # kept to sign notifications
    assert me.request("DELETE", uuid, replica, "elasticsearch").status_code == 200
    assert_problem(me.request("GET", uuid, replica, "elasticsearch"), 404, "not_found")


def test_ownership(subscribers):
    owner, intruder = subscribers(), subscribers()
    v1 = owner.put("aws", body(es_query=ES_QUERY)).json()["uuid"]
    v2 = owner.put("aws", body()).json()["uuid"]
    # Someone else's Elasticsearch subscription is forbidden; someone else's JMESPath one does not exist.
    assert_problem(intruder.request("GET", v1, "aws", "elasticsearch"), 403, "Forbidden")
    assert_problem(intruder.request("DELETE", v1, "aws", "elasticsearch"), 403, "Forbidden")
    assert_problem(intruder.request("GET", v2, "aws"), 404, "not_found")
    assert_problem(intruder.request("DELETE", v2, "aws"), 404, "not_found")
    assert_problem(intruder.request("GET", v1, "gcp", "elasticsearch"), 404, "not_found")
    assert intruder.request("GET", None, "aws").json() == {"subscriptions": []}
    assert owner.request("GET", v1, "aws", "elasticsearch").status_code == 200
    assert owner.request("GET", v2, "aws").status_code == 200


@pytest.mark.slow
def test_the_hundred_and_first_subscription_is_refused(subscribers):
    me = subscribers()
    for i in range(LIMIT):
        assert me.put("aws", body(jmespath_query=f"bundle_info.uuid=='{i}'")).status_code == 201
    assert_problem(me.put("aws", body()), 406, "not_acceptable")
    # The limit counts one replica and one kind, as the original's per-backend indices and tables did.
    assert me.put("gcp", body()).status_code == 201
    assert me.put("aws", body(es_query=ES_QUERY)).status_code == 201
    assert len(me.request("GET", None, "aws").json()["subscriptions"]) == LIMIT


@pytest.mark.parametrize("extra,code", [
    ({"attachments": {"_x": {"type": "jmespath", "expression": "files"}}}, "invalid_attachment_name"),
    ({"attachments": {"x": {"type": "jmespath", "expression": ""}}}, "invalid_attachment_expression"),
    ({"attachments": {"x": {"type": "jmespath", "expression": "files[?"}}}, "invalid_attachment_expression"),
    ({"es_query": ES_QUERY, "attachments": {"x": {"type": "jmespath", "expression": "[["}}},
     "invalid_attachment_expression"),
    ({"jmespath_query": "files[?"}, "invalid_jmespath"),
    ({"jmespath_query": "[" * 3000}, "invalid_jmespath"),
    ({"attachments": {"x": {"type": "jmespath", "expression": "(" * 3000 + "a" + ")" * 3000}}},
     "invalid_attachment_expression"),
    ({"attachments": {"x": {"type": "sql", "expression": "files"}}}, "illegal_arguments"),
    ({"attachments": {"x": {"type": "jmespath"}}}, "illegal_arguments"),
    ({"method": "PATCH"}, "illegal_arguments"),
    ({"encoding": "text/plain"}, "illegal_arguments"),
    ({"form_fields": {"a": 1}}, "illegal_arguments"),
    ({"callback_url": "ftp://example.org/"}, "illegal_arguments"),
    ({"colour": "blue"}, "illegal_arguments"),
], ids=lambda value: str(value)[:40] if isinstance(value, dict) else value)
def test_validation(subscribers, extra, code):
    assert_problem(subscribers().put("aws", body(**extra)), 400, code)


@pytest.mark.parametrize("es_query", [{"bool": {}}, {"match_all": {}}, {"size": 3}],
                         ids=lambda q: next(iter(q)))
def test_any_es_query_object_is_accepted(subscribers, settings, replica, es_query):
    """As by the original, which indexed `es_query` as a percolator document: one without `query` is stored (and
    matches nothing); only a `query` the search engine rejects is refused."""
    SearchBackend(settings).ensure_index(replica, "subscription-tests")  # something a query could run against
    me = subscribers()
    r = me.put(replica, body(es_query=es_query))
    assert r.status_code == 201, r.text
    got = me.request("GET", r.json()["uuid"], replica, "elasticsearch")
    assert got.status_code == 200 and got.json()["es_query"] == es_query


def test_a_callback_url_is_required(subscribers):
    assert_problem(subscribers().put("aws", {"jmespath_query": ""}), 400, "illegal_arguments")


def test_an_invalid_es_query_is_refused(subscribers, settings, replica):
    SearchBackend(settings).ensure_index(replica, "subscription-tests")  # something to run the query against
    r = subscribers().put(replica, body(es_query={"query": {"no_such_query": {}}}))
    body_ = assert_problem(r, 400, "illegal_arguments")
    assert "no_such_query" in body_["title"]


def test_an_es_query_is_accepted_before_anything_is_indexed(in_process, api, settings):
    email = f"{uuidlib.uuid4().hex[:12]}@example.org"
    client = in_process(stage="nothing-indexed-yet")  # its docs alias does not exist
    r = client.put("/v1/subscriptions", params={"replica": "aws"}, json=body(es_query=ES_QUERY),
                   headers=api.auth(email=email))
    assert r.status_code == 201, r.text
    SubscriptionStore(settings.subscriptions_table).delete(email, r.json()["uuid"])


def test_authentication_and_groups(api, subscribers):
    assert api.request("GET", "/v1/subscriptions", params={"replica": "aws"}).status_code == 401
    assert api.request("PUT", "/v1/subscriptions", params={"replica": "aws"}, json=body()).status_code == 401
    outsider = subscribers(group="nobody")
    assert_problem(outsider.put("aws", body()), 403, "Forbidden")
    assert_problem(outsider.request("GET", None, "aws"), 403, "Forbidden")


def test_read_only_mode_refuses_subscribing(in_process, api):
    r = in_process(read_only=True).put("/v1/subscriptions", params={"replica": "aws"}, json=body(),
                                       headers=api.auth())
    assert r.status_code == 503 and r.json()["code"] == "read_only"
