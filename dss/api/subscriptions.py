"""Subscriptions: built in a later issue."""
from ..errors import not_implemented


def find(**_):
    raise not_implemented("GET /subscriptions")


def put(**_):
    raise not_implemented("PUT /subscriptions")


def get(**_):
    raise not_implemented("GET /subscriptions/{uuid}")


def delete(**_):
    raise not_implemented("DELETE /subscriptions/{uuid}")
