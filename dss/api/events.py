"""Events: built with indexing and notifications."""
from ..errors import not_built

list_events = not_built("GET /events")
get = not_built("GET /events/{uuid}")
