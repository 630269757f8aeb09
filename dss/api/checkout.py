"""Bundle checkout: built in a later issue."""
from ..errors import not_implemented


def post(**_):
    raise not_implemented("Bundle checkout")


def get(**_):
    raise not_implemented("Bundle checkout status")
