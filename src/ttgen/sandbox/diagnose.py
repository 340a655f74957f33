"""Reading a failure's log for what caused it: the network or the engine (infrastructure, worth
retrying), TLS interception (a setting fixes it), or the task itself (deterministic).

Used on image build logs (a build is retried only when it failed for a reason outside the task)
and on the output of commands run in containers (a verifier that cannot reach a package index
behind a TLS-intercepting proxy is no model failure).
"""

from __future__ import annotations

import re

# A proxy re-signing HTTPS with its own CA, seen by pip/requests, curl, git, apt, npm, Go.
_TLS = re.compile(
    r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL certificate problem|"
    r"x509: certificate signed by unknown authority|unable to get local issuer certificate|"
    r"self[- ]signed certificate in certificate chain|server certificate verification failed|"
    r"SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    re.I,
)

TLS_HINT = (
    "TLS certificate verification failed: this network seems to intercept HTTPS with its own "
    "CA. Set TTGEN_EXTRA_CA_CERT=host (trust this machine's CA bundle) or "
    "TTGEN_EXTRA_CA_CERT=/path/to/ca.pem (or extra_ca_cert under [images] in ttgen.toml); ttgen "
    "then adds it to every image it builds and points pip, requests, curl, git and node at it. "
    "Images built before need --force-build."
)

# Signs of a failure outside the task: (pattern, what it says).
_INFRA_SIGNS = [
    (
        r"Cannot connect to the Docker daemon|error during connect|"
        r"connection to the engine (was )?(lost|closed)",
        "the Docker engine is unreachable",
    ),
    (
        r"Temporary failure resolving|Temporary failure in name resolution|"
        r"Could not resolve host|no such host|Name or service not known|"
        r"getaddrinfo failed|EAI_AGAIN",
        "a name did not resolve (DNS / network down)",
    ),
    (
        r"Network is unreachable|No route to host|Connection timed out|"
        r"Failed to establish a new connection|ConnectTimeoutError|ReadTimeoutError|"
        r"i/o timeout|TLS handshake timeout|connection reset by peer|ETIMEDOUT|ECONNRESET|"
        r"Read timed out",
        "the network is unreachable or timing out",
    ),
    (
        r"\b50[234]\b[^\n]{0,40}(Service Unavailable|Bad Gateway|Gateway Time-?out)|"
        r"429 Too Many Requests|toomanyrequests|Hash Sum mismatch",
        "a registry or package index failed (unavailable, rate-limited or mid-sync)",
    ),
    (r"no space left on device", "the engine host is out of disk space"),
]
_INFRA = [(re.compile(p, re.I), why) for p, why in _INFRA_SIGNS]


def tls_intercepted(text: str) -> bool:
    return bool(_TLS.search(text))


def infrastructure_sign(text: str) -> str | None:
    """What in `text` shows a failure outside the task (None: nothing does)."""
    for pattern, why in _INFRA:
        m = pattern.search(text)
        if m:
            return f"{why}: {m.group(0)!r}"
    return None
