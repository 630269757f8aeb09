#!/usr/bin/env python
"""Print a bearer token signed by the local stack's development OpenID issuer.

    python scripts/dev_token.py [--email E] [--group G] [--root .local] [--expires-in S]
    curl -H "Authorization: Bearer $(python scripts/dev_token.py)" ...

The issuer's key is created by the first `make run` (python -m dss.local.stack run); the token's
issuer is the OPENID_PROVIDER written to <root>/env by the last run.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from dss.local import issuer  # noqa: E402
from dss.local.stack import read_env_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--email", default=os.environ.get("DSS_LOCAL_DEV_EMAIL") or "dev@example.org")
    parser.add_argument("--group", default="hca")
    parser.add_argument("--root", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("DSS_LOCAL_DIR") or ".local"),
                        help="the local stack's directory (default: $DSS_LOCAL_DIR or .local)")
    parser.add_argument("--expires-in", type=int, default=3600, help="lifetime in seconds (default 3600)")
    args = parser.parse_args(argv)

    stack_env = read_env_file(args.root / "env")
    token_issuer = stack_env.get("OPENID_PROVIDER") or os.environ.get("OPENID_PROVIDER")
    try:
        token = issuer.mint_token(args.root, args.email, args.group, issuer=token_issuer,
                                  expires_in=args.expires_in)
    except issuer.IssuerNotInitialized as e:
        print(f"dev_token: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"dev_token: {e}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
