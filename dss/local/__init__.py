"""The local development stack: emulated cloud servers and a development OpenID issuer."""
