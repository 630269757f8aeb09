"""GET and PUT /subscriptions, GET and DELETE /subscriptions/{uuid}.

A PUT with a truthy `es_query` creates an Elasticsearch subscription (answer `{uuid}`); any other a JMESPath one
(answer: the stored document). The other routes pick the kind by `subscription_type` (default jmespath). Tokens
of group hca or public may subscribe; a subscription belongs to the token's email. Someone else's Elasticsearch
subscription answers 403 `Forbidden`, someone else's JMESPath one 404, as in the original. `hmac_secret_key` is
never returned, not even by the PUT that sets it (the original echoed it there).
"""
from __future__ import annotations

import logging

from opensearchpy import NotFoundError, RequestError, TransportError

from ..errors import DSSError
from ..identifiers import new_version
from ..index.backend import search_backend
from ..notify.subscriptions import ELASTICSEARCH, JMESPATH, LIMIT, Subscription, SubscriptionStore, kind_of, validate
from . import assert_writable, caller_email, context

logger = logging.getLogger(__name__)


def find(replica: str, subscription_type: str = JMESPATH):
    owner = caller_email()
    subscriptions = _store().of_owner(owner, replica, subscription_type)
    return {"subscriptions": [s.public() for s in subscriptions]}, 200


def put(replica: str, body: dict):
    assert_writable()
    owner = caller_email()
    validate(body)
    kind = kind_of(body)
    store = _store()
    if store.count(owner, replica, kind) >= LIMIT:
        raise DSSError(406, "not_acceptable", f"Users cannot exceed {LIMIT} subscriptions!")
    if kind == ELASTICSEARCH and "query" in body["es_query"]:
        _check_query(replica, body["es_query"]["query"])
    subscription = Subscription.new(owner, replica, body)
    store.put(subscription)
    logger.info("subscription %s (%s) created in %s for %s", subscription.uuid, kind, replica, owner)
    return ({"uuid": subscription.uuid} if kind == ELASTICSEARCH else subscription.public()), 201


def get(uuid: str, replica: str, subscription_type: str = JMESPATH):
    owner = caller_email()
    return _owned(uuid.lower(), replica, subscription_type, owner).public(), 200


def delete(uuid: str, replica: str, subscription_type: str = JMESPATH):
    assert_writable()
    owner = caller_email()
    subscription = _owned(uuid.lower(), replica, subscription_type, owner)
    _store().delete(owner, subscription.uuid)
    logger.info("subscription %s deleted from %s by %s", subscription.uuid, replica, owner)
    return {"timeDeleted": new_version()}, 200


def _owned(uuid: str, replica: str, kind: str, owner: str) -> Subscription:
    store = _store()
    subscription = store.get(owner, uuid)
    if subscription and subscription.replica == replica and subscription.kind == kind:
        return subscription
    if subscription is None and kind == ELASTICSEARCH:
        other = store.by_uuid(uuid)
        if other and other.replica == replica and other.kind == ELASTICSEARCH:
            raise DSSError(403, "Forbidden", "Your credentials can't access this subscription!")
    raise DSSError(404, "not_found", "Cannot find subscription!")


def _check_query(replica: str, query) -> None:
    """Run the query once (no hits returned), so that one the backend rejects is refused now, not at match time.
    Before any bundle is indexed there is nothing to run it against, and the query is accepted unchecked. An
    `es_query` without `query` is stored as it is, as by the original: it matches nothing.
    """
    backend = search_backend(context().settings)
    try:
        backend.client.search(index=backend.alias(replica), body={"query": query, "size": 0})
    except NotFoundError:
        pass
    except RequestError as e:
        raise DSSError(400, "illegal_arguments", f"The es_query is invalid: {e.error}: {_reason(e)}") from e
    except TransportError as e:  # the backend is down or failing
        raise DSSError(500, "elasticsearch_error", f"Unable to check the es_query: {e}") from e


def _reason(e: RequestError) -> str:
    error = e.info.get("error") if isinstance(e.info, dict) else None
    return str((error.get("reason") if isinstance(error, dict) else error) or e)


def _store() -> SubscriptionStore:
    return SubscriptionStore(context().settings.subscriptions_table)
