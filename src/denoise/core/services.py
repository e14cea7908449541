"""Is a server up? One bounded HTTP check, with retries for the errors that can pass.

Refused connections, unknown hosts and refused credentials are final: retrying them only delays
the one line the user needs. Timeouts, resets and 5xx answers can pass, so they are retried with
doubling waits until params.yaml's services.retry_seconds is spent.
"""

from __future__ import annotations

import dataclasses
import time

import requests

from denoise.core.config import Services
from denoise.core.errors import ServiceError

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class Service:
    """A server to check: what it is, its base URL, how to fix it when it is down."""

    name: str  # "MLflow tracking server"
    url: str  # base URL, as the user configured it
    health_path: str  # answers 200 when the server is up
    fix: str  # what to do when it does not answer, appended to the one line
    credentials_fix: str = "check the credentials"  # ... when it refuses them
    auth: tuple[str, str] | None = None  # HTTP basic credentials
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


# Errors that waiting cannot cure: nothing listens there, or there is no such host.
_FINAL = (
    "Connection refused",
    "Name or service not known",
    "nodename nor servname",
    "No address associated",
    "Temporary failure in name resolution",
)


def _final(error: requests.RequestException) -> bool:
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return True
    if isinstance(error, requests.Timeout) or not isinstance(error, requests.ConnectionError):
        return False
    return any(reason in str(error) for reason in _FINAL)


def retry_schedule(settings: Services) -> tuple[int, int]:
    """(retries, backoff factor) for urllib3's doubling waits within settings.retry_seconds.

    urllib3 2 retries the first failure at once and waits factor * 2**(n - 1) after the n-th,
    so n retries at factor 1 wait 2**n - 2 seconds in all: 30 s gives 5 retries (2+4+8+16).
    """
    retries = 0
    while retries < 10 and 2 ** (retries + 1) - 2 <= settings.retry_seconds:
        retries += 1
    return retries, 1


def check(service: Service, settings: Services) -> None:
    """Raise ServiceError (one line: the service, its URL, why, the fix) unless it answers."""
    deadline = time.monotonic() + settings.retry_seconds
    wait = 1.0
    url = f"{service.url.rstrip('/')}{service.health_path}"
    while True:
        try:
            response = requests.get(
                url, timeout=settings.timeout_seconds, auth=service.auth, headers=service.headers
            )
        except requests.RequestException as error:
            reason = _reason(error)
            if _final(error):
                raise ServiceError(_line(service, reason)) from None
        else:
            if response.status_code in (401, 403):
                raise ServiceError(
                    f"{service.name} {service.url}: credentials refused "
                    f"(HTTP {response.status_code}); {service.credentials_fix}"
                )
            if response.ok:
                return
            reason = f"HTTP {response.status_code} from {url}"
            if response.status_code not in TRANSIENT_STATUS:
                raise ServiceError(_line(service, reason))
        if time.monotonic() + wait > deadline:
            raise ServiceError(
                _line(service, f"{reason}, still after retrying for {settings.retry_seconds:g} s")
            )
        time.sleep(wait)
        wait *= 2


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.Timeout):
        return "no answer (timed out)"
    text = str(error)
    for reason in (*_FINAL, "Connection reset"):
        if reason in text:
            return reason.lower()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _line(service: Service, reason: str) -> str:
    return f"{service.name} {service.url} is unreachable ({reason}); {service.fix}"
