"""/bundles: built in a later issue."""
from ..errors import not_implemented


def get(**_):
    raise not_implemented("GET /bundles/{uuid}")


def put(**_):
    raise not_implemented("PUT /bundles/{uuid}")


def patch(**_):
    raise not_implemented("PATCH /bundles/{uuid}")


def delete(**_):
    raise not_implemented("DELETE /bundles/{uuid}")


def enumerate(**_):
    raise not_implemented("GET /bundles/all")
