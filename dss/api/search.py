"""POST /search: built with indexing."""
from ..errors import not_built

post = not_built("POST /search")
