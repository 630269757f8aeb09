"""The API Lambda. API Gateway proxy events are translated (by mangum) into ASGI calls on the same connexion app
that `make run` serves: dss-api.yml stays the only routing table.

The full Chalice packaging, direct invocations and the API Gateway time budget come with the deployment issue.
"""
import logging
import os

from mangum import Mangum

from dss.app import create_app

logging.basicConfig(level=os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = create_app()
# Error bodies are JSON text too; without this mangum would base64-encode them.
handler = Mangum(app, lifespan="off", api_gateway_base_path="/",
                 text_mime_types=["application/json", "application/problem+json", "text/"])
