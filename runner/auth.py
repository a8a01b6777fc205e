"""Tokens for the hunting APIs, by client credentials, through msal.

One ``ConfidentialClientApplication`` lives per tenant for the whole process,
so msal's cache serves tokens until shortly before they expire. msal is
synchronous; every call to it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import msal
import requests
import structlog

from runner.errors import AuthError
from runner.secrets import Secret

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ClientCredential:
    """What the application proves itself with: a secret or a certificate."""

    secret: Secret | None = None
    private_key_pem: Secret | None = None
    certificate_pem: bytes | None = None
    thumbprint: str | None = None

    def for_msal(self) -> str | dict[str, str]:
        if self.secret is not None:
            return self.secret.reveal()
        if self.private_key_pem is None or self.thumbprint is None:
            raise ValueError("a certificate credential needs a private key and thumbprint")
        credential = {
            "private_key": self.private_key_pem.reveal(),
            "thumbprint": self.thumbprint,
        }
        if self.certificate_pem is not None:
            # Sends x5c, which subject-name/issuer authentication needs.
            credential["public_certificate"] = self.certificate_pem.decode("ascii")

        return credential


def http_session(
    *, verify: bool | str, proxy: str | None, authority: str
) -> requests.Session:
    """The requests session msal talks through.

    ``trust_env`` is off so that ``REQUESTS_CA_BUNDLE`` cannot override our
    ``verify``; the environment's proxy settings are therefore applied here,
    explicitly, unless the tenant names its own proxy.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = verify
    if proxy:
        session.proxies = {"https": proxy, "http": proxy}
    else:
        session.proxies = requests.utils.get_environ_proxies(authority)

    return session


class TokenProvider:
    """Bearer tokens for one tenant and one API scope."""

    def __init__(
        self,
        tenant: str,
        *,
        client_id: str,
        credential: ClientCredential,
        authority: str,
        scope: str,
        verify: bool | str = True,
        proxy: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.tenant = tenant
        self.scope = scope
        self._session = http_session(verify=verify, proxy=proxy, authority=authority)
        # msal fetches the authority's discovery document in its constructor,
        # a blocking call: the application is built on first use, in a thread.
        self._build = lambda: msal.ConfidentialClientApplication(
            client_id,
            client_credential=credential.for_msal(),
            authority=authority,
            http_client=self._session,
            instance_discovery=False,
            timeout=timeout,
        )
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A valid access token, from msal's cache when it has one."""
        async with self._lock:
            return await asyncio.to_thread(self._acquire)

    async def refresh(self) -> str:
        """Drop the cached token and get a new one (after a 401)."""
        async with self._lock:
            if self._app is not None:
                await asyncio.to_thread(self._app.remove_tokens_for_client)
            log.info("auth.token_refreshed", tenant=self.tenant)

            return await asyncio.to_thread(self._acquire)

    def _acquire(self) -> str:
        try:
            if self._app is None:
                self._app = self._build()
            result: dict[str, Any] = self._app.acquire_token_for_client(
                scopes=[self.scope]
            )
        except (requests.RequestException, ValueError) as error:
            # msal raises these when the identity endpoint cannot be reached or
            # answers something that is not JSON.
            raise AuthError(self.tenant, "unreachable", _describe(error)) from error
        if "access_token" not in result:
            raise AuthError(
                self.tenant,
                str(result.get("error", "unknown_error")),
                str(result.get("error_description", "no description")).splitlines()[0],
            )

        return str(result["access_token"])

    def close(self) -> None:
        self._session.close()


def _describe(error: Exception) -> str:
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate verification failed (check ca_bundle)"

    return text.splitlines()[0] if text else type(error).__name__
