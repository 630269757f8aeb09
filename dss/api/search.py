"""POST /search: built with indexing (a later issue)."""
from ..errors import not_implemented


def post(**_):
    raise not_implemented("Search")
