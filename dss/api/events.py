"""GET /events (the journal's streams in a time window, paged by cursor) and GET /events/{uuid}?version.

The journal itself is dss.events.journal.
"""
from __future__ import annotations

from ..errors import DSSError
from ..events import journal
from . import context
from .paging import paged


def list_events(replica: str, from_date: str | None = None, to_date: str | None = None, per_page: int = 1,
                token: str | None = None):
    start, end = _date(from_date, "from_date"), _date(to_date, "to_date")
    if start and end and start > end:
        raise DSSError(400, "bad_request", f"from_date {from_date} is after to_date {to_date}.")
    if token is not None and journal.Entry.from_name(token) is None:
        raise DSSError(400, "illegal_arguments", "The token is not one this service made.")
    ctx = context()
    rs = ctx.replicas[replica]
    # A token (the last entry of the previous page) replaces from_date.
    found = journal.entries(rs, after=token, from_date=start, to_date=end)
    streams, more = journal.group_streams(found, per_page)
    body = {"event_streams": [journal.stream_manifest(rs, s, ctx.settings.signed_url_ttl) for s in streams]}
    return paged(body, "event_streams", more=more, token=streams[-1][-1].name if more else None)


def get(uuid: str, replica: str, version: str):
    document = journal.lookup(context().replicas[replica], uuid.lower(), version)
    if document is None:
        raise DSSError(404, "not_found", f"No event for bundle {uuid.lower()}.{version} in {replica}.")
    return document, 200


def _date(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return journal.parse_date(value)
    except ValueError:
        raise DSSError(400, "illegal_arguments", f"{name} must be a DSS_VERSION or an ISO 8601 timestamp.") from None
