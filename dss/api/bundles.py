"""/bundles: built with bundles and collections."""
from ..errors import not_built

get = not_built("GET /bundles/{uuid}")
put = not_built("PUT /bundles/{uuid}")
patch = not_built("PATCH /bundles/{uuid}")
delete = not_built("DELETE /bundles/{uuid}")
enumerate = not_built("GET /bundles/all")
