"""HTTP-01 answers, and the self-check before an order.

nginx sends every port-80 request for `/.well-known/acme-challenge/` (of its sites, and of domains
waiting for their first certificate) to this service, which answers from this board: the answers
live only while an order needs them. The self-check publishes a probe of its own and fetches it
through the domain as the CA would: a domain that does not reach this nginx costs no failed
validation (CAs limit those).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket

import httpx2

from docker_manager.errors import SelfCheckFailed

TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class ChallengeBoard:
    def __init__(self) -> None:
        self._answers: dict[str, str] = {}

    def publish(self, token: str, answer: str) -> None:
        self._answers[token] = answer

    def withdraw(self, token: str) -> None:
        self._answers.pop(token, None)

    def answer(self, token: str) -> str | None:
        if not 0 < len(token) <= 256 or not set(token) <= TOKEN_CHARS:
            return None
        return self._answers.get(token)

    async def self_check(self, domain: str, address: str | None, *, timeout: float = 10.0) -> None:
        """Fetch a probe through `domain` (at `address`, else where its name points, port 80)."""
        token, answer = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.publish(token, answer)
        try:
            target = address or await _resolve(domain)
            url = f"http://{target}/.well-known/acme-challenge/{token}"
            try:
                async with httpx2.AsyncClient(timeout=timeout, trust_env=False) as client:
                    reply = await client.get(url, headers={"Host": domain})
            except httpx2.HTTPError as exc:
                raise SelfCheckFailed(
                    f"{domain} did not answer on port 80 at {target} ({type(exc).__name__})",
                    problem_type="selfCheck",
                    permanent=False,
                ) from None
            if reply.status_code != 200 or reply.text.strip() != answer:
                raise SelfCheckFailed(
                    f"{domain} at {target} does not reach this nginx (HTTP {reply.status_code} for the "
                    "probe): point the domain here before asking for a certificate",
                    problem_type="selfCheck",
                    permanent=False,
                )
        finally:
            self.withdraw(token)


async def _resolve(domain: str) -> str:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(domain, 80, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise SelfCheckFailed(
            f"{domain} does not resolve ({exc.strerror or exc})", problem_type="selfCheck", permanent=False
        ) from None
    family, _, _, _, sockaddr = infos[0]
    host = str(sockaddr[0])
    if not ipaddress.ip_address(host.split("%")[0]).is_global:
        # The probe would go to this host's own network on a caller's word (a request forgery);
        # a CA could not reach such an address either.
        raise SelfCheckFailed(
            f"{domain} resolves to a private address: a CA cannot reach it (set "
            "DM_ACME_SELF_CHECK_ADDRESS when this host's public address is private here)",
            problem_type="selfCheck",
            permanent=False,
        )
    return f"[{host}]:80" if family == socket.AF_INET6 else f"{host}:80"
