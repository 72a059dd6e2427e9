"""The ACME protocol (RFC 8555) through the `acme` package that certbot is built on: one account per
directory, kept on disk, and an order for one domain answered by HTTP-01.

Every call here blocks (the package speaks `requests`): the certificates service runs each step in a
thread, with events between them. The CA's problems become `AcmeError` with the problem type, whether
retrying can help, and the CA's Retry-After when it sent one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from docker_manager.errors import AcmeError
from docker_manager.util.files import write_atomic

USER_AGENT = "docker-manager (acme)"
PROBLEM_PREFIX = "urn:ietf:params:acme:error:"
# Problems a retry cannot fix until someone changes something (the domain, its DNS, the policy).
PERMANENT_PROBLEMS = frozenset(
    {
        "rejectedIdentifier",
        "unauthorized",
        "caa",
        "unsupportedIdentifier",
        "invalidContact",
        "unsupportedContact",
        "externalAccountRequired",
        "badCSR",
    }
)

# ARI (RFC 9773 §4.3): ask again after the CA's Retry-After, bounded to a minute .. a day; six
# hours when it says nothing.
ARI_DEFAULT_WAIT = 6 * 3600.0
ARI_MIN_WAIT, ARI_MAX_WAIT = 60.0, 24 * 3600.0

Publish = Callable[[str, str], None]  # (token, key authorization): what port 80 must answer


class _Network(client.ClientNetwork):
    """The package's network, remembering the last answer's Retry-After (its errors drop it)."""

    retry_after: str | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.retry_after = response.headers.get("Retry-After")
        return response


@dataclass
class Order:
    """An order in progress: the connection it was placed on and the CA's order resource."""

    acme: client.ClientV2
    network: _Network
    resource: messages.OrderResource
    domain: str


class AcmeAccounts:
    """The account of each directory, under `root` (0700): `key.pem` (0600) and `account.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, directory_url: str) -> Path:
        return self.root / hashlib.sha256(directory_url.encode()).hexdigest()[:16]

    def key(self, directory_url: str) -> JWKRSA:
        """The directory's account key, made on first use. Blocking."""
        path = self.folder(directory_url) / "key.pem"
        try:
            pem = path.read_bytes()
        except FileNotFoundError:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(path.parent, 0o700)
            write_atomic(path, pem)
        loaded = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        return JWKRSA(key=loaded)

    def remember(self, directory_url: str, uri: str, contact: tuple[str, ...]) -> None:
        """What the CA calls the account (for the operator; the key alone finds it again)."""
        record = {"directory": directory_url, "uri": uri, "contact": list(contact)}
        path = self.folder(directory_url) / "account.json"
        try:
            if json.loads(path.read_text()) == record:
                return
        except (OSError, ValueError):
            pass
        write_atomic(path, json.dumps(record, indent=2).encode())


class AcmeClient:
    """Orders certificates from one directory. Blocking: call each method in a thread."""

    def __init__(
        self,
        directory_url: str,
        accounts: AcmeAccounts,
        *,
        email: str | None,
        ca_bundle: Path | None,
        timeout: float = 30.0,
    ) -> None:
        self.directory_url = directory_url
        self._accounts = accounts
        self._email = email
        self._verify: str | bool = str(ca_bundle) if ca_bundle else True
        self._timeout = timeout

    def place_order(self, domain: str, key_pem: bytes) -> Order:
        """Connect, make sure the account exists (registered again if the CA forgot it), and
        place an order for `domain` with a CSR of `key_pem`."""
        problems = _problems()
        with problems:
            # (the network is known to the error mapping before its first request: a CA answers a
            # rate limit on new-account and new-order, with the Retry-After to honour)
            network = problems.network = self._network()
            acme = self._register(network)
            csr = crypto_util.make_csr(key_pem, [domain])
            return Order(acme, network, acme.new_order(csr), domain)

    def answer_challenges(self, order: Order, publish: Publish, tokens: list[str]) -> None:
        """Publish every HTTP-01 answer, then tell the CA to check them. `tokens` gets each token
        as it is published (the caller withdraws them, also when this fails half-way)."""
        with _problems(order.network):
            for authorization in order.resource.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # the CA remembers an earlier validation of this name
                challenge = next(
                    (c for c in authorization.body.challenges if isinstance(c.chall, challenges.HTTP01)),
                    None,
                )
                if challenge is None:
                    raise AcmeError(
                        f"the CA offers no HTTP-01 challenge for {order.domain}",
                        problem_type="noHttp01",
                        permanent=True,
                    )
                response, validation = challenge.response_and_validation(order.network.key)
                token = challenge.chall.encode("token")
                publish(token, validation)
                tokens.append(token)
                order.acme.answer_challenge(challenge, response)

    def finalize(self, order: Order, *, seconds: float) -> str:
        """Wait for the validations, finalize, and return the full chain (PEM)."""
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=seconds)
        with _problems(order.network):
            done = order.acme.poll_and_finalize(order.resource, deadline)
        if not done.fullchain_pem:
            raise AcmeError("the CA finalized the order without a certificate", problem_type="serverInternal")
        return str(done.fullchain_pem)

    def renewal_window(self, cert_pem: bytes) -> tuple[datetime.datetime | None, datetime.datetime]:
        """ARI (RFC 9773): a moment in the CA's suggested renewal window for this certificate
        (None when the CA offers no renewal information), and when to ask again (the CA's
        Retry-After, else six hours). Needs no account: the directory and one GET."""
        problems = _problems()
        with problems:
            network = problems.network = self._network()
            acme = client.ClientV2(client.ClientV2.get_directory(self.directory_url, network), network)
            network.retry_after = None
            try:
                # (its own next-question time mixes naive local and naive UTC: only the window,
                # aware, is taken; the wait comes from the answer's Retry-After, read here)
                suggested: datetime.datetime | None = acme.renewal_time(cert_pem)[0]
            except errors.ARIError:  # (the CA's renewal information did not answer)
                suggested = None
        wait = min(max(_seconds(network.retry_after) or ARI_DEFAULT_WAIT, ARI_MIN_WAIT), ARI_MAX_WAIT)
        ask_again = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=wait)
        if suggested is not None and suggested.tzinfo is None:
            suggested = None  # (an expired certificate: the package answers its naive end; due anyway)
        return suggested, ask_again

    def _network(self) -> _Network:
        return _Network(
            self._accounts.key(self.directory_url),
            user_agent=USER_AGENT,
            verify_ssl=self._verify,  # type: ignore[arg-type]  # (passed to requests: a CA bundle path works)
            timeout=int(self._timeout),
        )

    def _register(self, network: _Network) -> client.ClientV2:
        directory = client.ClientV2.get_directory(self.directory_url, network)
        acme = client.ClientV2(directory, network)
        contact = (f"mailto:{self._email}",) if self._email else ()
        registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
        try:
            account = acme.new_account(registration)
        except errors.ConflictError as existing:  # this key has an account already
            account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
            network.account = account
        self._accounts.remember(self.directory_url, str(account.uri), contact)
        return acme


class _problems:
    """The package's exceptions as AcmeError (problem type, permanence, Retry-After)."""

    def __init__(self, network: _Network | None = None) -> None:
        self.network = network

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, AcmeError) or not isinstance(exc, Exception):
            return
        retry_after = _seconds(self.network.retry_after) if self.network else None
        raise _as_acme_error(exc, retry_after) from exc


def _as_acme_error(exc: Exception, retry_after: float | None) -> AcmeError:
    if isinstance(exc, messages.Error):
        return _problem(exc, retry_after)
    if isinstance(exc, errors.ValidationError):
        for authorization in exc.failed_authzrs:
            for challenge in authorization.body.challenges:
                if challenge.error is not None:
                    return _problem(challenge.error, retry_after, prefix="validation failed: ")
        return AcmeError("validation failed", problem_type="unauthorized", permanent=False)
    if isinstance(exc, errors.TimeoutError):
        return AcmeError("the CA did not finish the order in time", problem_type="timeout", permanent=False)
    if isinstance(exc, requests.RequestException):
        return AcmeError(f"the CA cannot be reached: {type(exc).__name__}", problem_type="connection")
    return AcmeError(f"the ACME exchange failed: {type(exc).__name__}: {exc}", problem_type="client")


def _problem(error: messages.Error, retry_after: float | None, *, prefix: str = "") -> AcmeError:
    kind = (error.typ or "").removeprefix(PROBLEM_PREFIX) or "unknown"
    detail = f"{prefix}{error.detail or error.description or kind}"
    return AcmeError(
        f"{kind}: {detail}",
        problem_type=kind,
        permanent=kind in PERMANENT_PROBLEMS,
        retry_after=retry_after if kind == "rateLimited" or retry_after else None,
    )


def _seconds(header: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: a number of seconds or an HTTP date)."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = datetime.datetime.strptime(header, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
