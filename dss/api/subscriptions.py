"""Subscriptions: built with indexing and notifications."""
from ..errors import not_built

find = not_built("GET /subscriptions")
put = not_built("PUT /subscriptions")
get = not_built("GET /subscriptions/{uuid}")
delete = not_built("DELETE /subscriptions/{uuid}")
