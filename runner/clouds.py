"""Where each cloud signs in and serves each hunting API, and which scope it wants.

The table is the reference's; a tenant may instead give explicit ``authority``
and ``api_base`` URLs (regional hosts, private endpoints, the sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass

CLOUDS = ("commercial", "gcc", "gcc-high", "dod", "sandbox")
BACKENDS = ("graph", "xdr", "mde")

# Path of the query endpoint under the API base, per backend.
QUERY_PATHS = {
    "graph": "/v1.0/security/runHuntingQuery",
    "xdr": "/api/advancedhunting/run",
    "mde": "/api/advancedqueries/run",
}

_LOGIN = {
    "commercial": "https://login.microsoftonline.com",
    "gcc": "https://login.microsoftonline.com",
    "gcc-high": "https://login.microsoftonline.us",
    "dod": "https://login.microsoftonline.us",
}

# API host per cloud and backend; the token audience is the same host except
# where a regional host is configured explicitly (it keeps the global audience).
_API_HOSTS = {
    "commercial": {
        "graph": "https://graph.microsoft.com",
        "xdr": "https://api.security.microsoft.com",
        "mde": "https://api.securitycenter.microsoft.com",
    },
    "gcc": {
        "graph": "https://graph.microsoft.com",
        "xdr": "https://api-gcc.security.microsoft.us",
        "mde": "https://api-gcc.securitycenter.microsoft.us",
    },
    "gcc-high": {
        "graph": "https://graph.microsoft.us",
        "xdr": "https://api-gov.security.microsoft.us",
        "mde": "https://api-gov.securitycenter.microsoft.us",
    },
    "dod": {
        "graph": "https://dod-graph.microsoft.us",
        "xdr": "https://api-gov.security.microsoft.us",
        "mde": "https://api-gov.securitycenter.microsoft.us",
    },
}


@dataclass(frozen=True)
class Endpoints:
    """The URLs and scope one tenant uses: sign-in authority, query URL, scope."""

    authority: str
    query_url: str
    scope: str
    backend: str


def resolve(
    cloud: str,
    backend: str,
    tenant_id: str,
    *,
    authority: str | None = None,
    api_base: str | None = None,
    sandbox_base: str | None = None,
) -> Endpoints:
    """The endpoints of a tenant, from its cloud or its explicit URLs.

    The sandbox answers on one host for identity and all three APIs and checks
    the commercial audiences, so a sandbox tenant differs from a commercial one
    only by its host.
    """
    if cloud == "sandbox":
        if sandbox_base is None:
            raise ValueError("cloud sandbox needs the sandbox's base URL")
        default_authority = f"{sandbox_base}/{tenant_id}"
        default_api = sandbox_base
        audience = _API_HOSTS["commercial"][backend]
    else:
        default_authority = f"{_LOGIN[cloud]}/{tenant_id}"
        default_api = _API_HOSTS[cloud][backend]
        audience = _API_HOSTS[cloud][backend]
    base = (api_base or default_api).rstrip("/")

    return Endpoints(
        authority=(authority or default_authority).rstrip("/"),
        query_url=base + QUERY_PATHS[backend],
        scope=f"{audience}/.default",
        backend=backend,
    )
