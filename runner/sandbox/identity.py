"""The emulated identity endpoint: discovery, token, keys, and bearer checks.

Just enough of Entra ID's v2.0 endpoint for msal's client-credentials flow,
with a client secret or a certificate (a signed client assertion), and the
error bodies Entra returns. Access tokens are RS256 JWTs signed by a key made
at start; the hunting APIs verify them with ``Identity.verify_bearer``.
"""

from __future__ import annotations

import base64
import hmac
import secrets as token_bytes
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import jwt
import structlog
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from .settings import ClientSettings, SandboxClock

log = structlog.get_logger(__name__)

# Client assertions signed on a machine whose clock is a little off still pass.
ASSERTION_CLOCK_SKEW_SECONDS = 300.0
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Api:
    """One hunting API as the identity endpoint knows it: audience and role."""

    name: str
    resource: str
    role: str


APIS: dict[str, Api] = {
    "graph": Api("graph", "https://graph.microsoft.com", "ThreatHunting.Read.All"),
    "xdr": Api("xdr", "https://api.security.microsoft.com", "AdvancedHunting.Read.All"),
    "mde": Api(
        "mde", "https://api.securitycenter.microsoft.com", "AdvancedQuery.Read.All"
    ),
}


@dataclass(frozen=True)
class RegisteredCertificate:
    """A certificate credential: the key that verifies assertions, and its validity."""

    public_key: Any
    not_valid_before: datetime
    not_valid_after: datetime


@dataclass
class RegisteredClient:
    """An application registration: its tenant and its credentials."""

    client_id: str
    tenant_id: str
    secrets: list[str] = field(default_factory=list)
    # SHA-1 and SHA-256 thumbprints (hex) of each certificate, to the certificate.
    certificates: dict[str, RegisteredCertificate] = field(default_factory=dict)
    withhold_roles: bool = False


class ClientRegistry:
    """The registered applications, keyed by client id; changeable at runtime."""

    def __init__(self) -> None:
        self._clients: dict[str, RegisteredClient] = {}

    def add(self, client: ClientSettings) -> RegisteredClient:
        """Register the client a ``ClientSettings`` describes."""
        registered = self._clients.setdefault(
            client.client_id,
            RegisteredClient(client_id=client.client_id, tenant_id=client.tenant_id),
        )
        registered.tenant_id = client.tenant_id
        registered.withhold_roles = client.withhold_roles
        if client.secret is not None:
            registered.secrets.append(client.secret)
        if client.certificate_pem is not None:
            certificate = x509.load_pem_x509_certificate(
                client.certificate_pem.encode()
            )
            entry = RegisteredCertificate(
                public_key=certificate.public_key(),
                not_valid_before=certificate.not_valid_before_utc,
                not_valid_after=certificate.not_valid_after_utc,
            )
            for algorithm in (hashes.SHA1(), hashes.SHA256()):
                registered.certificates[certificate.fingerprint(algorithm).hex()] = (
                    entry
                )

        return registered

    def register_secret(
        self,
        client_id: str,
        secret: str,
        *,
        tenant_id: str,
        withhold_roles: bool = False,
    ) -> None:
        """Register (or add a secret to) an application authenticating by secret."""
        self.add(
            ClientSettings(
                client_id=client_id,
                tenant_id=tenant_id,
                secret=secret,
                withhold_roles=withhold_roles,
            )
        )

    def register_certificate(
        self,
        client_id: str,
        certificate_pem: str,
        *,
        tenant_id: str,
        withhold_roles: bool = False,
    ) -> None:
        """Register (or add a certificate to) an application using certificates."""
        self.add(
            ClientSettings(
                client_id=client_id,
                tenant_id=tenant_id,
                certificate_pem=certificate_pem,
                withhold_roles=withhold_roles,
            )
        )

    def get(self, client_id: str) -> RegisteredClient | None:
        """The registration for *client_id*, or ``None``."""
        return self._clients.get(client_id)

    def tenants(self) -> set[str]:
        """Every tenant some registered application lives in."""
        return {client.tenant_id for client in self._clients.values()}


class TokenRefused(Exception):
    """The token endpoint refuses a request; carries Entra's error fields."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description


class BearerRefused(Exception):
    """An API call's bearer token is refused: 401, or 403 for a missing role."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Identity:
    """Issues and verifies tokens on behalf of the registered applications."""

    def __init__(
        self, registry: ClientRegistry, clock: SandboxClock, token_lifetime: int
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.base_url = ""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._key_id = token_bytes.token_hex(8)

    # ----------------------------------------------------------------- routes

    def add_routes(self, app: web.Application) -> None:
        """Mount the discovery, token and key endpoints under ``/{tenant}/``."""
        app.router.add_get(
            "/{tenant}/v2.0/.well-known/openid-configuration", self._discovery
        )
        app.router.add_get(
            "/{tenant}/.well-known/openid-configuration", self._discovery
        )
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/{tenant}/discovery/v2.0/keys", self._keys)
        app.router.add_get("/{tenant}/discovery/keys", self._keys)

    async def _discovery(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant not in self.registry.tenants():
            return self._error_response(
                request,
                TokenRefused(
                    400,
                    "invalid_tenant",
                    90002,
                    f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure "
                    "you have the correct tenant ID and are signing into the correct "
                    "cloud.",
                ),
            )
        root = f"{self.base_url}/{tenant}"
        document = {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "grant_types_supported": ["client_credentials"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "sandbox.local",
        }

        return web.json_response(document)

    async def _keys(self, request: web.Request) -> web.Response:
        numbers = self._key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "use": "sig",
            "kid": self._key_id,
            "alg": "RS256",
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes(3, "big")),
        }

        return web.json_response({"keys": [key]})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        tenant = request.match_info["tenant"]
        fields = {key: str(value) for key, value in form.items()}
        fields.update(_basic_credentials(request.headers.get("Authorization")))
        try:
            client, api = self._authenticate(request, tenant, fields)
        except TokenRefused as refusal:
            log.info(
                "sandbox.token_refused",
                tenant_id=tenant,
                client_id=fields.get("client_id", ""),
                error_code=refusal.code,
            )
            return self._error_response(request, refusal)

        token = self.issue_token(client, api)
        log.debug("sandbox.token_issued", tenant_id=tenant, client_id=client.client_id)

        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            }
        )

    # ------------------------------------------------------------ the checks

    def _authenticate(
        self, request: web.Request, tenant: str, fields: dict[str, str]
    ) -> tuple[RegisteredClient, Api]:
        if fields.get("grant_type") != "client_credentials":
            raise TokenRefused(
                400,
                "unsupported_grant_type",
                70003,
                "AADSTS70003: The app requested an unsupported grant type "
                f"'{fields.get('grant_type', '')}'.",
            )
        client_id = fields.get("client_id", "")
        client = self.registry.get(client_id)
        if tenant not in self.registry.tenants():
            raise TokenRefused(
                400,
                "invalid_request",
                90002,
                f"AADSTS90002: Tenant '{tenant}' not found.",
            )
        if client is None or client.tenant_id != tenant:
            raise TokenRefused(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id}' was not "
                f"found in the directory '{tenant}'. This can happen if the "
                "application has not been installed by the administrator of the "
                "tenant or consented to by any user in the tenant.",
            )
        api = self._api_for_scope(fields.get("scope", ""), tenant)

        if "client_assertion" in fields:
            self._check_assertion(request, client, fields)
        elif "client_secret" in fields:
            offered = fields["client_secret"]
            if not any(hmac.compare_digest(offered, known) for known in client.secrets):
                raise TokenRefused(
                    401,
                    "invalid_client",
                    7000215,
                    "AADSTS7000215: Invalid client secret provided. Ensure the "
                    "secret being sent in the request is the client secret value, "
                    "not the client secret ID, for a secret added to app "
                    f"'{client_id}'.",
                )
        else:
            raise TokenRefused(
                401,
                "invalid_client",
                7000218,
                "AADSTS7000218: The request body must contain the following "
                "parameter: 'client_assertion' or 'client_secret'.",
            )

        return client, api

    def _api_for_scope(self, scope: str, tenant: str) -> Api:
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise TokenRefused(
                400,
                "invalid_scope",
                1002012,
                f"AADSTS1002012: The provided value for scope {scope} is not valid. "
                "Client credential flows must have a scope value with /.default "
                "suffixed to the resource identifier (application ID URI).",
            )
        resource = scopes[0].removesuffix("/.default")
        for api in APIS.values():
            if api.resource == resource:
                return api

        raise TokenRefused(
            400,
            "invalid_resource",
            500011,
            f"AADSTS500011: The resource principal named {resource} was not found "
            f"in the tenant named {tenant}.",
        )

    def _check_assertion(
        self, request: web.Request, client: RegisteredClient, fields: dict[str, str]
    ) -> None:
        if fields.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise TokenRefused(
                400,
                "invalid_request",
                700025,
                "AADSTS700025: client_assertion_type is missing or not "
                f"'{CLIENT_ASSERTION_TYPE}'.",
            )
        assertion = fields["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as error:
            raise TokenRefused(
                401,
                "invalid_client",
                50027,
                f"AADSTS50027: JWT token is invalid or malformed: {error}.",
            ) from error
        thumbprint = _header_thumbprint(header)
        registered = client.certificates.get(thumbprint or "")
        if registered is None:
            raise TokenRefused(
                401,
                "invalid_client",
                700027,
                "AADSTS700027: The certificate with identifier used to sign the "
                "client assertion is not registered on application. [Reason - The "
                f"key was not found., Thumbprint of key used by client: "
                f"'{(thumbprint or '').upper()}']",
            )
        now_instant = self.clock.now()
        if not (
            registered.not_valid_before <= now_instant <= registered.not_valid_after
        ):
            raise TokenRefused(
                401,
                "invalid_client",
                700027,
                "AADSTS700027: The certificate with identifier used to sign the "
                "client assertion is expired on application. [Reason - The key used "
                "is expired., Thumbprint of key used by client: "
                f"'{(thumbprint or '').upper()}', Found key 'Start="
                f"{registered.not_valid_before:%m/%d/%Y %H:%M:%S}, End="
                f"{registered.not_valid_after:%m/%d/%Y %H:%M:%S}']",
            )
        try:
            claims = jwt.decode(
                assertion,
                registered.public_key,
                algorithms=["RS256", "PS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.PyJWTError as error:
            raise TokenRefused(
                401,
                "invalid_client",
                700027,
                "AADSTS700027: Client assertion contains an invalid signature.",
            ) from error

        audience = claims.get("aud")
        token_url = f"{request.scheme}://{request.host}{request.path}"
        own_url = f"{self.base_url}{request.path}"
        if audience not in (token_url, own_url):
            raise TokenRefused(
                401,
                "invalid_client",
                700023,
                "AADSTS700023: Client assertion audience claim does not match Realm "
                f"issuer. Review the documentation at "
                f"https://aka.ms/certCredentials. Audience: '{audience}'",
            )
        if claims.get("iss") != client.client_id or claims.get("sub") != (
            client.client_id
        ):
            raise TokenRefused(
                401,
                "invalid_client",
                700021,
                "AADSTS700021: Client assertion application identifier doesn't match "
                "'client_id' parameter.",
            )
        now = self.clock.time()
        try:
            expires = float(claims.get("exp", 0))
            not_before = float(claims.get("nbf", claims.get("iat", 0)))
            valid_from = _entra_time(datetime.fromtimestamp(not_before, UTC))
            valid_until = _entra_time(datetime.fromtimestamp(expires, UTC))
        except (TypeError, ValueError, OverflowError, OSError) as error:
            raise TokenRefused(
                401,
                "invalid_client",
                50027,
                "AADSTS50027: JWT token is invalid or malformed: its exp, nbf or iat "
                "claim is not a time in seconds.",
            ) from error
        if not (
            not_before - ASSERTION_CLOCK_SKEW_SECONDS
            <= now
            <= expires + ASSERTION_CLOCK_SKEW_SECONDS
        ):
            raise TokenRefused(
                401,
                "invalid_client",
                700024,
                "AADSTS700024: Client assertion is not within its valid time range. "
                f"Current time: {_entra_time(self.clock.now())}, assertion valid "
                f"from {valid_from}, expiry time of assertion {valid_until}.",
            )

    # ---------------------------------------------------------------- tokens

    def issue_token(self, client: RegisteredClient, api: Api) -> str:
        """An access token for *client* to call *api*, signed by the sandbox."""
        now = int(self.clock.time())
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"app:{client.client_id}"))
        claims = {
            "aud": api.resource,
            "iss": f"https://sts.windows.net/{client.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "tid": client.tenant_id,
            "appid": client.client_id,
            "azp": client.client_id,
            "oid": object_id,
            "sub": object_id,
            "idtyp": "app",
            "roles": [] if client.withhold_roles else [api.role],
            "ver": "1.0",
        }

        return jwt.encode(
            claims, self._key, algorithm="RS256", headers={"kid": self._key_id}
        )

    def verify_bearer(self, authorization: str | None, api: Api) -> dict[str, Any]:
        """The claims of a valid bearer token for *api*; ``BearerRefused`` if not."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise BearerRefused(401, "Access token is empty.")
        try:
            claims = jwt.decode(
                token.strip(),
                self._key.public_key(),
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.PyJWTError as error:
            raise BearerRefused(
                401, "Access token validation failure. Invalid signature or format."
            ) from error

        now = self.clock.time()
        if not float(claims.get("nbf", 0)) <= now < float(claims.get("exp", 0)):
            raise BearerRefused(401, "Access token has expired or is not yet valid.")
        if claims.get("aud") != api.resource:
            raise BearerRefused(
                401, "Access token validation failure. Invalid audience."
            )
        roles = claims.get("roles") or []
        if api.role not in roles:
            raise BearerRefused(
                403,
                "Missing application roles. API required roles: "
                f"{api.role}. Application has following roles: {', '.join(roles)}.",
            )

        return claims

    def _error_response(
        self, request: web.Request, refusal: TokenRefused
    ) -> web.Response:
        now = self.clock.now()
        trace_id = str(uuid.uuid4())
        correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        body = {
            "error": refusal.error,
            "error_description": (
                f"{refusal.description} Trace ID: {trace_id} Correlation ID: "
                f"{correlation_id} Timestamp: {_entra_time(now)}"
            ),
            "error_codes": [refusal.code],
            "timestamp": _entra_time(now),
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.base_url}/error?code={refusal.code}",
        }

        return web.json_response(body, status=refusal.status)


def _basic_credentials(authorization: str | None) -> dict[str, str]:
    """``client_id`` and ``client_secret`` from HTTP Basic (client_secret_basic).

    RFC 6749 form-encodes both before joining them, so they are decoded here.
    """
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return {}
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:
        return {}
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        return {}

    return {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(secret)}


def _header_thumbprint(header: dict[str, Any]) -> str | None:
    encoded = header.get("x5t#S256") or header.get("x5t")
    if not isinstance(encoded, str):
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).hex()
    except ValueError:
        return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _entra_time(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%SZ")
