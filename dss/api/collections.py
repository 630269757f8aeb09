"""Collections: built in a later issue."""
from ..errors import not_implemented


def list_collections(**_):
    raise not_implemented("GET /collections")


def put(**_):
    raise not_implemented("PUT /collections")


def get(**_):
    raise not_implemented("GET /collections/{uuid}")


def patch(**_):
    raise not_implemented("PATCH /collections/{uuid}")


def delete(**_):
    raise not_implemented("DELETE /collections/{uuid}")
