"""The identity endpoint through real msal over real HTTPS."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests

from runner.sandbox import ClientSettings, Sandbox
from runner.sandbox.certs import make_client_certificate

ROLES = {
    "graph": ("https://graph.microsoft.com", "ThreatHunting.Read.All"),
    "xdr": ("https://api.security.microsoft.com", "AdvancedHunting.Read.All"),
    "mde": ("https://api.securitycenter.microsoft.com", "AdvancedQuery.Read.All"),
}


@pytest.mark.parametrize("api", ["graph", "xdr", "mde"])
async def test_demo_client_gets_token_for_each_api(
    sandbox: Sandbox, demo_app: object, api: str, get_token: Any, token: Any
) -> None:
    """The demo secret yields a signed token with the API's audience and role."""
    result = await get_token(demo_app, api)

    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    audience, role = ROLES[api]
    assert result["token_type"] == "Bearer"
    assert claims["aud"] == audience
    assert claims["roles"] == [role]
    assert claims["tid"] == sandbox.demo.tenant_id
    assert claims["appid"] == sandbox.demo.client_id
    assert claims["exp"] - claims["iat"] == 3600


async def test_tokens_verify_against_published_keys(
    sandbox: Sandbox, demo_app: object, get_token: Any, http_session: Any, token: Any
) -> None:
    """The JWKS the discovery document points to verifies the issued tokens."""
    session = http_session
    discovery = session.get(
        f"{sandbox.base_url}/{sandbox.demo.tenant_id}/v2.0/.well-known/openid-configuration"
    ).json()
    keys = jwt.PyJWKClient(discovery["jwks_uri"])
    keys.fetch_data = lambda: session.get(discovery["jwks_uri"]).json()  # type: ignore[method-assign]
    token = (await get_token(demo_app, "graph"))["access_token"]

    key = keys.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token, key.key, algorithms=["RS256"], audience="https://graph.microsoft.com"
    )
    assert claims["tid"] == sandbox.demo.tenant_id


async def test_wrong_secret_gets_entra_error_body(
    sandbox: Sandbox, make_app: Any, get_token: Any
) -> None:
    """A wrong secret is refused with invalid_client and an AADSTS7000215 body."""
    app = make_app(sandbox.demo.client_id, "not-the-secret", sandbox.demo.tenant_id)

    result = await get_token(app, "graph")

    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith(
        "AADSTS7000215: Invalid client secret"
    )
    assert result["error_codes"] == [7000215]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(result)


async def test_wrong_secret_status_is_401(sandbox: Sandbox, token: Any) -> None:
    """The token endpoint answers a wrong secret with HTTP 401, as Entra does."""
    response = requests.post(
        f"{sandbox.base_url}/{sandbox.demo.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.demo.client_id,
            "client_secret": "wrong",
            "scope": "https://graph.microsoft.com/.default",
        },
        verify=str(sandbox.ca_path),
        timeout=10,
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_unknown_scope_is_refused(demo_app: Any) -> None:
    """A scope for a resource the sandbox does not serve gets AADSTS500011."""
    result = await asyncio.to_thread(
        demo_app.acquire_token_for_client, scopes=["https://example.com/.default"]
    )

    assert result["error"] == "invalid_resource"
    assert result["error_codes"] == [500011]


def test_unknown_tenant_fails_discovery(sandbox: Sandbox, make_app: Any) -> None:
    """msal cannot start against a tenant the sandbox does not know."""
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        make_app(sandbox.demo.client_id, "x", str(uuid.uuid4()))


@pytest.mark.parametrize("form", ["thumbprint", "public_certificate"])
async def test_certificate_credential_is_accepted(
    sandbox: Sandbox, form: str, make_app: Any, get_token: Any, token: Any
) -> None:
    """A client assertion signed by the registered certificate's key gets a token."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cert_pem, key_pem, thumbprint = make_client_certificate("hunt-runner test")
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    credential = {"private_key": key_pem}
    if form == "thumbprint":
        credential["thumbprint"] = thumbprint
    else:
        credential["public_certificate"] = cert_pem
    app = make_app(client_id, credential, tenant_id)

    result = await get_token(app, "xdr")

    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == client_id
    assert claims["tid"] == tenant_id


async def test_certificate_signed_by_another_key_is_refused(
    sandbox: Sandbox, make_app: Any, get_token: Any
) -> None:
    """An assertion signed by a key that is not the registered one is refused."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cert_pem, _, thumbprint = make_client_certificate("registered")
    _, other_key, _ = make_client_certificate("impostor")
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    app = make_app(
        client_id, {"private_key": other_key, "thumbprint": thumbprint}, tenant_id
    )

    result = await get_token(app, "mde")

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


async def test_unregistered_certificate_is_refused(
    sandbox: Sandbox, make_app: Any, get_token: Any
) -> None:
    """A certificate the application never registered is refused by thumbprint."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cert_pem, _, _ = make_client_certificate("registered")
    _, other_key, other_thumbprint = make_client_certificate("unknown")
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    app = make_app(
        client_id,
        {"private_key": other_key, "thumbprint": other_thumbprint},
        tenant_id,
    )

    result = await get_token(app, "graph")

    assert result["error_codes"] == [700027]
    assert other_thumbprint.upper() in result["error_description"]


async def test_assertion_outside_its_time_window_is_refused(
    sandbox: Sandbox,
    clock_restored: Callable[[float], None],
    make_app: Any,
    get_token: Any,
) -> None:
    """An assertion judged by a clock an hour ahead gets AADSTS700024."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cert_pem, key_pem, thumbprint = make_client_certificate("skewed")
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    app = make_app(
        client_id, {"private_key": key_pem, "thumbprint": thumbprint}, tenant_id
    )
    clock_restored(3600)

    result = await get_token(app, "graph")

    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS700024")


async def test_small_skew_is_tolerated(
    sandbox: Sandbox,
    clock_restored: Callable[[float], None],
    make_app: Any,
    get_token: Any,
) -> None:
    """An assertion judged by a clock four minutes behind is still accepted."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cert_pem, key_pem, thumbprint = make_client_certificate("slightly skewed")
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    app = make_app(
        client_id, {"private_key": key_pem, "thumbprint": thumbprint}, tenant_id
    )
    clock_restored(-240)

    result = await get_token(app, "graph")

    assert "access_token" in result, result


async def test_client_in_another_tenant_is_not_found(
    sandbox: Sandbox,
    new_tenant: Callable[..., tuple[str, str, str]],
    make_app: Any,
    get_token: Any,
    token: Any,
) -> None:
    """A client id asking for a token in a tenant it is not registered in is refused."""
    _, client_id, secret = new_tenant()
    app = make_app(client_id, secret, sandbox.demo.tenant_id)

    result = await get_token(app, "graph")

    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


async def test_expired_registered_certificate_is_refused(
    sandbox: Sandbox, make_app: Any, get_token: Any
) -> None:
    """A certificate past its validity signs no usable assertion: AADSTS700027."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    ended = datetime.now(UTC) - timedelta(days=1)
    cert_pem, key_pem, thumbprint = make_client_certificate(
        "expired", not_valid_before=ended - timedelta(days=30), not_valid_after=ended
    )
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    app = make_app(
        client_id, {"private_key": key_pem, "thumbprint": thumbprint}, tenant_id
    )

    result = await get_token(app, "graph")

    assert result.get("error") == "invalid_client", result
    assert result["error_codes"] == [700027]
    assert "expired" in result["error_description"]


@pytest.mark.parametrize("expiry", ["soon", 1e300])
async def test_assertion_with_a_malformed_expiry_is_an_entra_error(
    sandbox: Sandbox, expiry: Any
) -> None:
    """An assertion whose exp is not a usable time gets Entra's error, not a 500."""
    tenant_id, client_id = str(uuid.uuid4()), str(uuid.uuid4())
    cert_pem, key_pem, thumbprint = make_client_certificate("malformed")
    sandbox.register_client(
        ClientSettings(
            client_id=client_id, tenant_id=tenant_id, certificate_pem=cert_pem
        )
    )
    token_url = f"{sandbox.base_url}/{tenant_id}/oauth2/v2.0/token"
    x5t = base64.urlsafe_b64encode(bytes.fromhex(thumbprint)).rstrip(b"=").decode()
    assertion = jwt.encode(
        {"aud": token_url, "iss": client_id, "sub": client_id, "exp": expiry},
        key_pem,
        algorithm="RS256",
        headers={"x5t": x5t},
    )
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "scope": "https://graph.microsoft.com/.default",
        "client_assertion_type": (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ),
        "client_assertion": assertion,
    }

    response = await asyncio.to_thread(
        requests.post, token_url, data=form, verify=str(sandbox.ca_path), timeout=10
    )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [50027]


async def test_client_secret_basic_is_accepted(sandbox: Sandbox) -> None:
    """The advertised client_secret_basic method (HTTP Basic) gets a token too."""
    discovery = await asyncio.to_thread(
        requests.get,
        f"{sandbox.base_url}/{sandbox.demo.tenant_id}/v2.0/.well-known/"
        "openid-configuration",
        verify=str(sandbox.ca_path),
        timeout=10,
    )
    document = discovery.json()
    assert "client_secret_basic" in document["token_endpoint_auth_methods_supported"]

    response = await asyncio.to_thread(
        requests.post,
        document["token_endpoint"],
        data={
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
        },
        auth=(sandbox.demo.client_id, sandbox.demo.client_secret.reveal()),
        verify=str(sandbox.ca_path),
        timeout=10,
    )

    assert response.status_code == 200, response.text
    claims = jwt.decode(
        response.json()["access_token"], options={"verify_signature": False}
    )
    assert claims["appid"] == sandbox.demo.client_id
