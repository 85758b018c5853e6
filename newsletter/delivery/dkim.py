"""Optional DKIM signatures (dkimpy), covering the one-click unsubscribe headers explicitly.

Gmail and Yahoo require List-Unsubscribe and List-Unsubscribe-Post to be covered by a valid DKIM
signature for one-click unsubscribe to count, so they are always in the signed header list.

Over-signing: a header name listed in ``h=`` once more than the message has it signs its *absence*
(RFC 6376 5.4.2), so a relay cannot add a second ``From`` or ``Subject``, a ``Reply-To`` that diverts
replies, or a ``List-*`` header, without breaking the signature. The message carries each of those fields
at most once, so listing them twice (and the absent ones once) is enough.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from newsletter.config import DkimSettings
from newsletter.errors import ConfigError

SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
    b"list-unsubscribe-post", b"feedback-id", b"mime-version", b"content-type",
)
OVERSIGNED_HEADERS = (
    b"from", b"subject", b"reply-to", b"list-id", b"list-unsubscribe", b"list-unsubscribe-post",
    b"list-help", b"list-subscribe", b"list-post", b"list-owner", b"list-archive",
)
"""Signed once more than they occur: none of them can be added in transit (see the module docstring)."""


class DkimSigner:
    def __init__(self, settings: DkimSettings) -> None:
        path = Path(settings.private_key_path)
        try:
            self.key = path.read_bytes()
        except OSError as error:
            raise ConfigError(
                f"delivery.dkim.private_key_path: cannot read {path}: {error.strerror}", key="delivery.dkim"
            ) from None
        if b"PRIVATE KEY" not in self.key:
            raise ConfigError(f"delivery.dkim.private_key_path: {path} is not a PEM private key", key="delivery.dkim")
        self.selector = settings.selector.encode("ascii")
        self.domain = settings.domain.encode("ascii")
        self.rsa = _rsa_key(self.key)
        """The key loaded once by OpenSSL, when it is an RSA key it can read (else dkimpy signs alone)."""

    def sign(self, message: bytes) -> bytes:
        if self.rsa is None:
            signature: bytes = dkim.sign(
                message, self.selector, self.domain, self.key, canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[*SIGNED_HEADERS, *OVERSIGNED_HEADERS],
            )
            return signature + message
        signer = _OpenSslRsaDKIM(message, signature_algorithm=b"rsa-sha256", linesep=b"\r\n")
        signer.rsa = self.rsa
        signed: bytes = signer.sign(self.selector, self.domain, self.key, canonicalize=(b"relaxed", b"relaxed"),
                                    include_headers=[*SIGNED_HEADERS, *OVERSIGNED_HEADERS])
        return signed + message


def _rsa_key(pem: bytes) -> RSAPrivateKey | None:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, RSAPrivateKey) else None


class _OpenSslRsaDKIM(dkim.DKIM):  # type: ignore[misc]  # dkimpy is untyped
    """dkimpy's signer (canonicalization, tags, header selection and folding are all its own) with the RSA
    signature made by OpenSSL instead of dkimpy's pure-Python modular exponentiation.

    Why: dkimpy's RSA-2048 signature costs ~6 ms of CPU, twenty times everything else a message costs to send
    (docs/benchmarks.md); OpenSSL's ~0.3 ms. PKCS #1 v1.5 signatures are deterministic, so the bytes are the
    ones dkimpy would write (tests/test_send_cpu.py compares them). ``gen_header`` is dkimpy 1.1's with the signing
    call changed (and without its ``standardize`` form, which only ARC sealing uses).
    """

    rsa: RSAPrivateKey

    def gen_header(self, fields: list[tuple[bytes, bytes]], include_headers: Any, canon_policy: Any,
                   header_name: bytes, pk: Any, standardize: bool = False) -> bytes:
        header_value = b"; ".join(b"=".join(x) for x in fields)
        if not standardize:
            header_value = dkim.fold(header_value, namelen=len(header_name), linesep=b"\r\n")
        header_value = dkim.RE_BTAG.sub(b"\\1", header_value)
        header = (header_name, b" " + header_value)
        h = dkim.HashThrough(self.hasher(), self.debug_content)
        sig = dict(fields)
        headers = canon_policy.canonicalize_headers(self.headers)
        self.signed_headers = dkim.hash_headers(h, canon_policy, headers, include_headers, header, sig)
        signature = self.rsa.sign(h.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        index = next(i for i in range(len(fields)) if fields[i][0] == b"b")
        fields[index] = (b"b", base64.b64encode(signature))
        header_value = b"; ".join(b"=".join(x) for x in fields) + self.linesep
        if not standardize:
            header_value = dkim.fold(header_value, namelen=len(header_name), linesep=self.linesep)
        return bytes(header_value)
