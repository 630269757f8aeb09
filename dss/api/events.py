"""Events: built in a later issue."""
from ..errors import not_implemented


def list_events(**_):
    raise not_implemented("GET /events")


def get(**_):
    raise not_implemented("GET /events/{uuid}")
