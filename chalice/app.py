"""The API Lambda, packaged by Chalice as the app `dss-api` (see scripts/package_lambdas.py and README, Deployment).

The Chalice routes only declare the API Gateway resources, derived from dss-api.yml; they have no views of their
own. Every event, from API Gateway or a direct invocation, goes whole to the connexion app that `make run` serves
(dss.lambda_api), so the spec stays the only routing table.
"""
import logging
import os

from chalice import Chalice
from dss.cloud_credentials import install_gcp_credentials
from dss.lambda_api import ApiLambda, gateway_routes

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))


def _create_app():
    install_gcp_credentials()
    from dss.app import create_app
    return create_app()


handler = ApiLambda(_create_app)


class DSSApi(Chalice):
    def __call__(self, event, context):
        return handler(event, context)


app = DSSApi(app_name="dss-api")


def _connexion(**path_parameters):
    """Never called: DSSApi.__call__ hands every event to the connexion app before Chalice could route it."""
    raise NotImplementedError


def _declare_routes() -> None:
    from dss.app import SPEC_PATH
    for path, methods in gateway_routes(SPEC_PATH).items():
        app.route(path, methods=methods, name=f"dss-{path}")(_connexion)


_declare_routes()
