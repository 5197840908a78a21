"""DKIM signatures (RFC 6376) with RSA-SHA256 or Ed25519-SHA256 (RFC 8463), relaxed/relaxed.

Written on top of ``cryptography`` (OpenSSL) rather than dkimpy because the sending worker signs
every message and dkimpy parses the whole message again and re-derives the key on each call;
here a ``Signer`` holds its parsed keys for the life of a delivery, the body is canonicalised
and hashed once per message however many keys sign it, and the builder hands over the headers
it has just written instead of having them parsed back. The tests verify what this module
signs with dkimpy's independent verifier.

Key generation and the DNS record (``generate``, ``dns_record``, ``dns_strings``) are here too:
they are the same RFC's other half and need nothing from the database.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

RSA = "rsa"
ED25519 = "ed25519"
ALGORITHMS = (RSA, ED25519)
RSA_BITS = 2048
# The headers a signature covers, those a receiver's filter looks at and that a forwarder must
# not be able to add or change. Each is signed once more than it occurs ("over-signing"), so a
# second From or Subject added in transit breaks the signature instead of being shown.
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
_WSP_RUN = re.compile(rb"[ \t]+")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
SELECTOR_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\Z"
)
DOMAIN_RE = re.compile(
    r"^(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z"
)


@dataclass(frozen=True)
class KeyPair:
    algorithm: str
    private_pem: str  # PKCS#8 PEM, unencrypted
    public_b64: str  # the p= value of the DNS record


def generate(algorithm: str) -> KeyPair:
    """A new key: RSA-2048 or Ed25519."""
    if algorithm == RSA:
        private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = rsa.generate_private_key(
            public_exponent=65537, key_size=RSA_BITS
        )
        # RFC 6376 3.6.1: p= is the DER SubjectPublicKeyInfo for RSA.
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
        # RFC 8463 4.2: p= is the bare 32-byte public key.
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        raise ValueError(f"unknown DKIM algorithm {algorithm!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(algorithm, pem.decode("ascii"), base64.b64encode(public).decode("ascii"))


def dns_record(algorithm: str, public_b64: str) -> str:
    """The TXT record's text: ``v=DKIM1; k=rsa; p=...``."""
    return f"v=DKIM1; k={algorithm}; p={public_b64}"


def dns_strings(text: str, size: int = 255) -> list[str]:
    """The record split into character-strings of at most 255 bytes: one TXT string cannot be
    longer, and an RSA-2048 record is about 410 bytes. Resolvers join them back."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def dns_zone_line(selector: str, domain: str, text: str) -> str:
    """The record as a zone-file line, each string quoted."""
    strings = " ".join(f'"{s}"' for s in dns_strings(text))
    return f"{selector}._domainkey.{domain}. IN TXT ( {strings} )"


# ---------------------------------------------------------------------------------------------
# Canonicalisation (RFC 6376 3.4.2 and 3.4.4, "relaxed")


def relaxed_header(name: bytes, value: bytes) -> bytes:
    if b"\r\n" in value:
        value = _FOLD.sub(b"", value)
    # The regular expression only when there is something to collapse: this runs for every
    # signed header of every message.
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.strip().lower() + b":" + value.strip(b" \t\r\n") + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    if b" " in body or b"\t" in body:
        body = _WSP_RUN.sub(b" ", _TRAILING_WSP.sub(b"\r\n", body))
        if body.endswith((b" ", b"\t")):
            body = body.rstrip(b" \t")
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Signing


class SigningKey:
    """One private key of a domain, parsed once."""

    def __init__(self, domain: str, selector: str, algorithm: str, private_pem: str):
        self.domain = domain
        self.selector = selector
        self.algorithm = algorithm
        key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
        if algorithm == RSA and isinstance(key, rsa.RSAPrivateKey):
            self.tag = "rsa-sha256"
        elif algorithm == ED25519 and isinstance(key, ed25519.Ed25519PrivateKey):
            self.tag = "ed25519-sha256"
        else:
            raise ValueError(f"the key of {selector}._domainkey.{domain} is not {algorithm}")
        self._key = key
        self.private_pem = private_pem

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463 3: Ed25519 signs the SHA-256 digest of the data ("PureEdDSA" over the hash).
        return self._key.sign(hashlib.sha256(data).digest())


Header = tuple[str, str]  # (name, value as written after "Name: ", folds and all)


@dataclass
class Unsigned:
    """A message's DKIM-Signature fields but for their b= values (``Signer.prepare``):
    ``to_sign`` holds, for each key, the bytes its private key must sign."""

    tags: list[str]
    to_sign: list[tuple[SigningKey, bytes]]

    def finish(self, signatures: Sequence[bytes]) -> str:
        """The DKIM-Signature header lines, given the signature of each ``to_sign``."""
        return "".join(
            f"DKIM-Signature: {tag}{_fold_b64(base64.b64encode(sig).decode('ascii'))}\r\n"
            for tag, sig in zip(self.tags, signatures, strict=True)
        )


class Signer:
    """Signs messages with every key given (say one RSA and one Ed25519 key of the sender's
    domain: RFC 8463 advises both, as not every receiver checks Ed25519 yet)."""

    def __init__(self, keys: Sequence[SigningKey]):
        if not keys:
            raise ValueError("a Signer needs at least one key")
        self.keys = list(keys)
        self._h_tags: dict[tuple[str, ...], str] = {}

    def _now(self) -> int:
        return int(time.time())

    def sign(self, headers: Iterable[Header], body: bytes) -> str:
        """The DKIM-Signature header lines (CRLF-terminated) to put above ``headers``.

        ``headers`` are the message's header fields in order, ``body`` its body exactly as
        sent (before SMTP dot-stuffing).
        """
        unsigned = self.prepare(headers, body)
        return unsigned.finish([key.sign(data) for key, data in unsigned.to_sign])

    def prepare(self, headers: Iterable[Header], body: bytes) -> Unsigned:
        """Everything of ``sign`` but the private-key operations, which the caller may have
        done elsewhere (``okuru.lib.dkim_process``) and hands to ``Unsigned.finish``."""
        by_name: dict[str, list[Header]] = {}
        for name, value in headers:
            by_name.setdefault(name.lower(), []).append((name, value))
        signed_names: list[str] = []
        signed = []
        for lname in SIGNED_HEADERS:
            present = by_name.get(lname, [])
            # RFC 6376 5.4.2: instances are taken from the bottom up; one name more than
            # there are instances signs "no further header of this name".
            for name, value in reversed(present):
                signed.append(relaxed_header(name.encode("ascii"), value.encode("ascii")))
            signed_names.extend([lname] * (len(present) + 1))
        head = b"".join(signed)
        bh = body_hash(body)
        now = self._now()
        h = self._h_tags.get(names := tuple(signed_names))
        if h is None:  # the same few header sets come back message after message
            h = self._h_tags[names] = _fold_list(signed_names)
        tags, to_sign = [], []
        for key in self.keys:
            tag = (
                f"v=1; a={key.tag}; c=relaxed/relaxed; d={key.domain}; s={key.selector}; t={now};"
                f"\r\n\th={h};\r\n\tbh={bh};\r\n\tb="
            )
            tags.append(tag)
            to_sign.append(
                (key, head + relaxed_header(b"DKIM-Signature", tag.encode("ascii"))[:-2])
            )
        return Unsigned(tags, to_sign)

    def sign_message(self, message: bytes) -> bytes:
        """``message`` (CRLF line ends, not dot-stuffed) with its signatures on top."""
        head, sep, body = message.partition(b"\r\n\r\n")
        headers = []
        for line in re.split(rb"\r\n(?![ \t])", head):
            name, _colon, value = line.partition(b":")
            headers.append((name.decode("ascii"), value.lstrip(b" ").decode("ascii")))
        return self.sign(headers, body).encode("ascii") + message


def _fold_list(names: list[str]) -> str:
    lines, line = [], ""
    for name in names:
        if line and len(line) + len(name) > 66:
            lines.append(line)
            line = ""
        line += (":" if line else "") + name
    lines.append(line)
    return ":\r\n\t ".join(lines)


def _fold_b64(value: str, width: int = 72) -> str:
    return "\r\n\t ".join(value[i : i + width] for i in range(0, len(value), width))
