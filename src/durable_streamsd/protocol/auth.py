"""Optional bearer-token access control, for deployments with no
authenticating proxy in front.

The token file has one grant per line: ``<token> <scope> <path prefix>``,
where scope is ``read`` (GET, HEAD), ``write`` (PUT, POST, DELETE) or
``all``; ``#`` starts a comment and a token may have several lines. The
check runs before any stream is looked up, so 401 and 403 never reveal
whether a stream exists. Tokens are kept only as SHA-256 digests and looked
up by digest, so comparing never depends on how much of a token matched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .errors import ProtocolError

SCOPES = {"read": frozenset({"GET", "HEAD"}), "write": frozenset({"PUT", "POST", "DELETE"})}
SCOPES["all"] = SCOPES["read"] | SCOPES["write"]

CHALLENGE = b'www-authenticate: Bearer realm="durable-streams"\r\n'


class TokenFileError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Grant:
    methods: frozenset[str]
    prefix: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    def __init__(self, grants: dict[bytes, list[Grant]]) -> None:
        self._grants = grants

    @classmethod
    def load(cls, path: str) -> TokenTable:
        grants: dict[bytes, list[Grant]] = {}
        with open(path, encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) != 3 or parts[1] not in SCOPES or not parts[2].startswith("/"):
                    raise TokenFileError(f"{path}:{n}: expected '<token> read|write|all /path/prefix'")
                token, scope, prefix = parts
                grants.setdefault(_digest(token), []).append(Grant(SCOPES[scope], prefix))
        return cls(grants)

    def __len__(self) -> int:
        return len(self._grants)

    def authorize(self, method: str, path: str, authorization: str | None) -> None:
        """Raise 401 without a known token, 403 if it does not cover this."""
        if method == "OPTIONS":
            return  # CORS preflight carries no credentials
        if authorization is None:
            raise ProtocolError(401, "authorization required", CHALLENGE)
        kind, _, token = authorization.strip().partition(" ")
        grants = self._grants.get(_digest(token.strip())) if kind.lower() == "bearer" else None
        if grants is None:
            raise ProtocolError(401, "invalid token", CHALLENGE)
        for g in grants:
            if method in g.methods and path.startswith(g.prefix):
                return
        raise ProtocolError(403, "token does not allow this")
