"""The small part of JOSE the bridge needs for OAuth 2.0 with Okta: RS256 JSON Web Tokens signed with an RSA key
(RFC 7515/7518/7519), JWK public keys and their thumbprints (RFC 7517/7638).

Why here and not PyJWT: neither PyJWT nor ``cryptography`` is among the project's dependencies; RS256 is RSASSA
PKCS#1 v1.5 with SHA-256 (RFC 8017 §8.2), a few lines over Python's integers. Signing uses the CRT and blinds the
message with a fresh random factor, so the time it takes does not depend on the private exponent's use with a known
input. Only RSA keys are read (PEM ``RSA PRIVATE KEY`` (PKCS#1), ``PRIVATE KEY`` (PKCS#8, unencrypted), or a private
JWK as Okta's Admin Console downloads it): an EC key is refused with a clear error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["JoseError", "RsaKey", "b64url", "decode_unverified", "encode_jwt", "generate_rsa_key", "load_private_key",
           "public_from_jwk", "thumbprint", "verify_jwt"]

_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")  # DigestInfo of SHA-256 (RFC 8017 §9.2)
_RSA_OID = bytes.fromhex("2a864886f70d010101")


class JoseError(ValueError):
    """A key or token that cannot be read or does not verify; the message never holds key material."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise JoseError("not base64url") from None


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _b64_int(text: Any) -> int:
    if not isinstance(text, str):
        raise JoseError("a JWK member is not a string")
    return int.from_bytes(_unb64url(text), "big")


@dataclass(frozen=True, repr=False)
class RsaKey:
    """An RSA key; private when ``d`` is set. ``repr`` never shows the private part."""

    n: int
    e: int
    d: int | None = None
    p: int | None = None
    q: int | None = None
    kid: str | None = None

    def __repr__(self) -> str:
        return f"RsaKey(bits={self.n.bit_length()}, private={self.d is not None}, kid={self.kid!r})"

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8

    def public_jwk(self) -> dict[str, str]:
        jwk = {"kty": "RSA", "e": _int_b64(self.e), "n": _int_b64(self.n)}
        return {**jwk, "kid": self.kid} if self.kid else jwk

    def private_jwk(self) -> dict[str, str]:
        assert self.d is not None and self.p is not None and self.q is not None
        return {**self.public_jwk(), "d": _int_b64(self.d), "p": _int_b64(self.p), "q": _int_b64(self.q)}

    def sign(self, message: bytes) -> bytes:
        if self.d is None:
            raise JoseError("a public key cannot sign")
        m = int.from_bytes(_encode(message, self.size), "big")
        while True:  # blinding: r random and invertible mod n
            r = secrets.randbelow(self.n - 2) + 2
            if math.gcd(r, self.n) == 1:
                break
        blinded = (m * pow(r, self.e, self.n)) % self.n
        if self.p and self.q:  # CRT
            dp, dq, qinv = self.d % (self.p - 1), self.d % (self.q - 1), pow(self.q, -1, self.p)
            m1, m2 = pow(blinded, dp, self.p), pow(blinded, dq, self.q)
            s = (m2 + self.q * ((qinv * (m1 - m2)) % self.p)) % self.n
        else:
            s = pow(blinded, self.d, self.n)
        s = (s * pow(r, -1, self.n)) % self.n
        return s.to_bytes(self.size, "big")

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != self.size:
            return False
        s = int.from_bytes(signature, "big")
        if s >= self.n:
            return False
        return hmac.compare_digest(pow(s, self.e, self.n).to_bytes(self.size, "big"), _encode(message, self.size))


def _encode(message: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §9.2)."""
    t = _SHA256_PREFIX + hashlib.sha256(message).digest()
    if size < len(t) + 11:
        raise JoseError("the RSA key is too short")
    return b"\x00\x01" + b"\xff" * (size - len(t) - 3) + b"\x00" + t


# ------------------------------------------------------------------ reading keys

def _der(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """(tag, value, position after) of the DER element at ``pos``."""
    try:
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        value = data[pos:pos + length]
    except IndexError:
        raise JoseError("truncated DER") from None
    if len(value) != length:
        raise JoseError("truncated DER")
    return tag, value, pos + length


def _sequence(data: bytes) -> list[tuple[int, bytes]]:
    tag, body, _ = _der(data)
    if tag != 0x30:
        raise JoseError("not a DER sequence")
    items, pos = [], 0
    while pos < len(body):
        t, v, pos = _der(body, pos)
        items.append((t, v))
    return items


def _pkcs1(der: bytes) -> RsaKey:
    items = _sequence(der)
    if len(items) < 9 or any(t != 0x02 for t, _ in items[:9]):
        raise JoseError("not an RSA private key")
    _, n, e, d, p, q = (int.from_bytes(v, "big") for _, v in items[:6])
    return RsaKey(n=n, e=e, d=d, p=p, q=q)


def _pkcs8(der: bytes) -> RsaKey:
    items = _sequence(der)
    if len(items) < 3 or items[1][0] != 0x30 or items[2][0] != 0x04:
        raise JoseError("not a PKCS#8 private key")
    _, oid, _ = _der(items[1][1])
    if oid != _RSA_OID:
        raise JoseError("only RSA keys are supported (the key is of another type, e.g. EC)")
    return _pkcs1(items[2][1])


def _pem(text: str) -> tuple[str, bytes]:
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise JoseError("not a PEM block")
    label = lines[0][len("-----BEGIN "):].rstrip("-")
    try:
        return label, base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise JoseError("PEM body is not base64") from None


def load_private_key(text: str, kid: str | None = None) -> RsaKey:
    """An RSA private key from PEM (PKCS#1 or unencrypted PKCS#8) or a private JWK (JSON); ``kid`` overrides the
    JWK's own. Errors say what is wrong with the key, never its content."""
    text = text.strip()
    if text.startswith("{"):
        try:
            jwk = json.loads(text)
        except ValueError:
            raise JoseError("the key is neither PEM nor a JSON Web Key") from None
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or "d" not in jwk:
            raise JoseError("the JWK is not an RSA private key (kty RSA with d)")
        key = RsaKey(n=_b64_int(jwk["n"]), e=_b64_int(jwk["e"]), d=_b64_int(jwk["d"]),
                     p=_b64_int(jwk["p"]) if "p" in jwk else None, q=_b64_int(jwk["q"]) if "q" in jwk else None,
                     kid=kid or jwk.get("kid"))
    else:
        label, der = _pem(text)
        if label == "RSA PRIVATE KEY":
            key = _pkcs1(der)
        elif label == "PRIVATE KEY":
            key = _pkcs8(der)
        else:
            raise JoseError(f"a PEM {label} is not a supported private key (RSA PRIVATE KEY or PRIVATE KEY)")
        key = RsaKey(key.n, key.e, key.d, key.p, key.q, kid)
    if key.n.bit_length() < 2048:
        raise JoseError("the RSA key is shorter than 2048 bits")
    probe = b"probe"
    if not key.verify(probe, key.sign(probe)):
        raise JoseError("the RSA key's parts do not match")
    return key


def public_from_jwk(jwk: dict[str, Any]) -> RsaKey:
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        raise JoseError("the JWK is not an RSA key")
    return RsaKey(n=_b64_int(jwk.get("n")), e=_b64_int(jwk.get("e")), kid=jwk.get("kid"))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK (``jkt``)."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def generate_rsa_key(bits: int = 2048, kid: str | None = None) -> RsaKey:
    """A new RSA key (e = 65537): the DPoP key of a process when none is configured, and the tests' keys."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)
        n, phi = p * q, (p - 1) * (q - 1)
        if p != q and n.bit_length() == bits and math.gcd(e, phi) == 1:
            return RsaKey(n=n, e=e, d=pow(e, -1, phi), p=p, q=q, kid=kid)


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if any(candidate % p == 0 for p in _SMALL_PRIMES):
            continue
        if _probably_prime(candidate):
            return candidate


def _probably_prime(n: int, rounds: int = 40) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


# ------------------------------------------------------------------ tokens

def _json_b64(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def encode_jwt(claims: dict[str, Any], key: RsaKey, headers: dict[str, Any] | None = None) -> str:
    header = {"alg": "RS256", **({"kid": key.kid} if key.kid else {}), **(headers or {})}
    signing_input = f"{_json_b64(header)}.{_json_b64(claims)}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) without checking the signature: to pick the key, then :func:`verify_jwt`."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise JoseError("not a JWS compact token")
    try:
        header, claims = json.loads(_unb64url(parts[0])), json.loads(_unb64url(parts[1]))
    except ValueError:
        raise JoseError("the token's header or claims are not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("the token's header or claims are not objects")
    return header, claims


def verify_jwt(token: str, key: RsaKey, *, leeway_s: float = 0, now: float | None = None) -> dict[str, Any]:
    """The claims of an RS256 ``token`` signed by ``key``, its ``exp`` not passed (``nbf`` reached)."""
    header, claims = decode_unverified(token)
    if header.get("alg") != "RS256":
        raise JoseError(f"alg {header.get('alg')!r} is not RS256")
    signing_input, _, signature = token.rpartition(".")
    if not key.verify(signing_input.encode(), _unb64url(signature)):
        raise JoseError("the signature does not verify")
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, (int, float)) or exp + leeway_s < now):
        raise JoseError("the token has expired")
    if nbf is not None and (not isinstance(nbf, (int, float)) or nbf - leeway_s > now):
        raise JoseError("the token is not valid yet")
    return claims
