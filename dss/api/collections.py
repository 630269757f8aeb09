"""Collections: built with bundles and collections."""
from ..errors import not_built

list_collections = not_built("GET /collections")
put = not_built("PUT /collections")
get = not_built("GET /collections/{uuid}")
patch = not_built("PATCH /collections/{uuid}")
delete = not_built("DELETE /collections/{uuid}")
