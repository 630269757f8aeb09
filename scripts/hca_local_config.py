#!/usr/bin/env python
"""Configure the real `hca` CLI (scripts/install_hca_cli.sh) for the local DSS, and print the shell lines to use it.

    source .local/env                                    # the local stack's endpoints (or pass --env-file)
    eval "$(.venv/bin/python scripts/hca_local_config.py)"
    hca dss upload --replica aws --staging-bucket $DSS_S3_STAGING_BUCKET --src-dir DIR

Writes, in --dir (default .local/hca/):

    dss-swagger.json  the spec served at $DSS_API_URL/v1/swagger.json plus "openapi" and "servers": for a
                      Swagger 2.0 spec the client would call https://{host}{basePath}; with "openapi" it
                      takes servers[0].url (http) and still parses the rest with the Swagger 2.0 rules
    hca.json          the client config: swagger_filename (used by DSSClient and AuthClient, so nothing is
                      fetched from the dead *.data.humancellatlas.org hosts), pre-seeded
                      application_secrets, and oauth2_token holding a long-lived bearer token minted by
                      the development issuer with a numeric far-future expires_at (no refresh attempts)
    xdg/              XDG_CONFIG_HOME for the CLI (its error.log lands in xdg/hca/)

The printed lines export HCA_CONFIG_FILE, XDG_CONFIG_HOME, OAUTHLIB_INSECURE_TRANSPORT=1 (the token goes
over http) and the AWS settings the CLI's boto3 needs to stage files in the local S3, and define a shell
function `hca` that runs the CLI from its virtualenv without GOOGLE_APPLICATION_CREDENTIALS: when that
variable is set at all, the CLI signs its own service-account JWT instead of using oauth2_token, and the
stack's env file sets it (a fake key the API does not trust).
The CLI rewrites hca.json at exit (it saves its merged config to the last config file); that is harmless.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys

import requests

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a script from anywhere

from dss.local import issuer  # noqa: E402
from dss.local.stack import read_env_file  # noqa: E402

TEN_YEARS = 10 * 365 * 24 * 3600
EXPIRES_AT = 4102444800  # 2100-01-01: the client never tries to refresh the token
# The AWS settings the CLI's boto3 needs: the endpoint (read from the environment by botocore), the
# region (else NoRegionError) and static keys (else it probes instance metadata).
AWS_VARS = ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
            "AWS_EC2_METADATA_DISABLED")
PASS_THROUGH = ("DSS_API_URL", "DSS_S3_STAGING_BUCKET")
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def hybrid_spec(api_url: str, timeout: float = 30) -> dict:
    """The served Swagger 2.0 spec, with "openapi" and "servers" added so the client uses http://."""
    response = requests.get(api_url.rstrip("/") + "/v1/swagger.json", timeout=timeout)
    response.raise_for_status()
    spec = response.json()
    if "swagger" not in spec and "openapi" not in spec:
        raise ValueError(f"{response.url} is not a Swagger/OpenAPI document")
    spec["openapi"] = "3.0.0"
    spec["servers"] = [{"url": api_url.rstrip("/") + spec.get("basePath", "/v1")}]
    return spec


def client_config(api_url: str, spec_path: pathlib.Path, token: str) -> dict:
    swagger_url = api_url.rstrip("/") + "/v1/swagger.json"
    return {
        # Top level: read by every SwaggerClient (DSSClient and AuthClient); overrides any swagger_url.
        "swagger_filename": str(spec_path),
        "DSSClient": {"swagger_url": swagger_url},
        "AuthClient": {"swagger_url": swagger_url},
        # Else the client fetches them from https://{host}/internal/application_secrets. Never used to
        # talk to an OAuth server: the token below does not expire.
        "application_secrets": {"installed": {
            "client_id": "dss-local", "client_secret": "unused",
            "auth_uri": api_url.rstrip("/") + "/oauth/authorize",
            "token_uri": api_url.rstrip("/") + "/oauth/token",
        }},
        "oauth2_token": {"access_token": token, "token_type": "Bearer", "expires_at": EXPIRES_AT},
    }


def write_private(path: pathlib.Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def configure(env: dict[str, str], directory: pathlib.Path, *, email: str, group: str,
              expires_in: int = TEN_YEARS) -> dict[str, str]:
    """Write the spec copy and the config in `directory`; return the variables the CLI needs."""
    api_url = env.get("DSS_API_URL")
    if not api_url:
        raise ValueError("DSS_API_URL is not set: `source .local/env` first, or pass --env-file")
    root = env.get("DSS_LOCAL_DIR") or ".local"
    token_issuer = env.get("OPENID_PROVIDER")
    if not token_issuer:
        raise ValueError("OPENID_PROVIDER is not set: `source .local/env` first, or pass --env-file")
    directory = directory.resolve()
    (directory / "xdg" / "hca").mkdir(parents=True, exist_ok=True)
    spec_path = directory / "dss-swagger.json"
    config_path = directory / "hca.json"
    token = issuer.mint_token(root, email, group, issuer=token_issuer,
                              audience=_first(env.get("OIDC_AUDIENCE")) or None,
                              email_claim=env.get("OIDC_EMAIL_CLAIM") or None,
                              group_claim=env.get("OIDC_GROUP_CLAIM") or None,
                              expires_in=expires_in)
    spec_path.write_text(json.dumps(hybrid_spec(api_url)))
    write_private(config_path, client_config(api_url, spec_path, token))
    variables = {
        "HCA_CONFIG_FILE": str(config_path),
        "XDG_CONFIG_HOME": str(directory / "xdg"),
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
    }
    variables.update({name: env[name] for name in (*AWS_VARS, *PASS_THROUGH) if env.get(name)})
    variables.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return variables


def _first(value: str | None) -> str:
    return next((part.strip() for part in (value or "").split(",") if part.strip()), "")


def shell_lines(variables: dict[str, str], hca_venv: pathlib.Path) -> list[str]:
    hca = shlex.quote(str(hca_venv / "bin" / "hca"))
    lines = [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    lines.append("unset " + " ".join(UNSET))
    lines.append(f'hca() {{ ( unset GOOGLE_APPLICATION_CREDENTIALS; exec {hca} "$@" ); }}')
    if not (hca_venv / "bin" / "hca").exists():
        lines.append(f"echo 'hca_local_config: no CLI at {hca_venv}; run `make hca-cli` first' >&2")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", type=pathlib.Path,
                        help="the local stack's env file (e.g. .local/env); default: the current environment")
    parser.add_argument("--dir", type=pathlib.Path, default=None,
                        help="where to write the config (default: $DSS_LOCAL_DIR/hca, i.e. .local/hca)")
    parser.add_argument("--hca-venv", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("HCA_VENV") or REPO_ROOT / ".hca-venv"),
                        help="the CLI's virtualenv (default: $HCA_VENV or .hca-venv in the project root)")
    parser.add_argument("--email", default=os.environ.get("DSS_LOCAL_DEV_EMAIL") or "dev@example.org")
    parser.add_argument("--group", default="hca")
    parser.add_argument("--expires-in", type=int, default=TEN_YEARS,
                        help="token lifetime in seconds (default: ten years)")
    parser.add_argument("--json", action="store_true",
                        help="print the variables as a JSON object instead of shell lines")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    if args.env_file:
        env.update(read_env_file(args.env_file))
    directory = args.dir or pathlib.Path(env.get("DSS_LOCAL_DIR") or ".local") / "hca"
    try:
        variables = configure(env, directory, email=args.email, group=args.group, expires_in=args.expires_in)
    except (ValueError, issuer.IssuerNotInitialized, requests.RequestException) as e:
        print(f"hca_local_config: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(variables, indent=2))
    else:
        print("\n".join(shell_lines(variables, args.hca_venv.absolute())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
