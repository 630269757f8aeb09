"""Bundle checkout: built with replication and checkout."""
from ..errors import not_built

post = not_built("POST /bundles/{uuid}/checkout")
get = not_built("GET /bundles/checkout/{checkout_job_id}")
