"""The part of JOSE the bridge needs for OAuth 2.0 with Okta: RS256 JSON Web Tokens signed with an RSA key
(RFC 7515/7518/7519), JWK public keys and their thumbprints (RFC 7517/7638).

The cryptography is ``cryptography``'s (OpenSSL) and the tokens are PyJWT's; this module only fixes the choices
(RS256, RSA keys of at least 2048 bits) and keeps key material out of every message and ``repr``. Keys are read from
PEM (``RSA PRIVATE KEY`` (PKCS#1) or unencrypted ``PRIVATE KEY`` (PKCS#8)) or from a private JWK as Okta's Admin
Console downloads it; an EC key is refused with a clear error.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwt.algorithms import RSAAlgorithm

__all__ = ["JoseError", "RsaKey", "b64url", "decode_unverified", "encode_jwt", "generate_rsa_key", "load_private_key",
           "public_from_jwk", "thumbprint", "verify_jwt"]


class JoseError(ValueError):
    """A key or token that cannot be read or does not verify; the message never holds key material."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, repr=False)
class RsaKey:
    """An RSA key (``cryptography``'s), private or public. ``repr`` never shows the private part."""

    key: rsa.RSAPrivateKey | rsa.RSAPublicKey
    kid: str | None = None

    def __repr__(self) -> str:
        return f"RsaKey(bits={self.key.key_size}, private={self.private}, kid={self.kid!r})"

    @property
    def private(self) -> bool:
        return isinstance(self.key, rsa.RSAPrivateKey)

    def _public(self) -> rsa.RSAPublicKey:
        return self.key.public_key() if isinstance(self.key, rsa.RSAPrivateKey) else self.key

    def public_jwk(self) -> dict[str, str]:
        jwk = {k: v for k, v in RSAAlgorithm.to_jwk(self._public(), as_dict=True).items() if k in ("kty", "e", "n")}
        return {**jwk, "kid": self.kid} if self.kid else jwk

    def private_jwk(self) -> dict[str, str]:
        if not self.private:
            raise JoseError("a public key has no private JWK")
        jwk = dict(RSAAlgorithm.to_jwk(self.key, as_dict=True))
        jwk.pop("key_ops", None)
        return {**jwk, "kid": self.kid} if self.kid else jwk

    def sign(self, message: bytes) -> bytes:
        if not isinstance(self.key, rsa.RSAPrivateKey):
            raise JoseError("a public key cannot sign")
        return self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._public().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            return False


def _checked(key: Any, kid: str | None) -> RsaKey:
    if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise JoseError("only RSA keys are supported (the key is of another type, e.g. EC)")
    if key.key_size < 2048:
        raise JoseError("the RSA key is shorter than 2048 bits")
    return RsaKey(key, kid)


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
        try:
            key = RSAAlgorithm.from_jwk(jwk)
        except (jwt.InvalidKeyError, ValueError, KeyError, TypeError):
            raise JoseError("the JWK's RSA parts are missing or do not match") from None
        return _checked(key, kid or jwk.get("kid"))
    if not text.startswith("-----BEGIN "):
        raise JoseError("not a PEM block")
    label = text.splitlines()[0][len("-----BEGIN "):].rstrip("-")
    if label not in ("RSA PRIVATE KEY", "PRIVATE KEY"):
        raise JoseError(f"a PEM {label} is not a supported private key (RSA PRIVATE KEY or PRIVATE KEY)")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except TypeError:
        raise JoseError("the private key is encrypted: give it unencrypted (file permissions protect it)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise JoseError("the PEM private key cannot be read") from None
    return _checked(key, kid)


def public_from_jwk(jwk: dict[str, Any]) -> RsaKey:
    if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
        raise JoseError("the JWK is not an RSA key")
    try:
        key = RSAAlgorithm.from_jwk({k: jwk.get(k) for k in ("kty", "e", "n")})
    except (jwt.InvalidKeyError, ValueError, KeyError, TypeError):
        raise JoseError("the JWK is not a readable RSA public key") from None
    return _checked(key, jwk.get("kid"))


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA JWK (``jkt``)."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def generate_rsa_key(bits: int = 2048, kid: str | None = None) -> RsaKey:
    """A new RSA key (e = 65537): the DPoP key of a process when none is configured, and the tests' keys."""
    return RsaKey(rsa.generate_private_key(public_exponent=65537, key_size=bits), kid)


def encode_jwt(claims: dict[str, Any], key: RsaKey, headers: dict[str, Any] | None = None) -> str:
    if not key.private:
        raise JoseError("a public key cannot sign")
    header = {**({"kid": key.kid} if key.kid else {}), **(headers or {})}
    return jwt.encode(claims, key.key, algorithm="RS256", headers=header or None)


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) without checking the signature: to pick the key, then :func:`verify_jwt`."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise JoseError("not a JWS compact token")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise JoseError("the token's header or claims are not JSON objects") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("the token's header or claims are not objects")
    return header, claims


def verify_jwt(token: str, key: RsaKey, *, leeway_s: float = 0, now: float | None = None) -> dict[str, Any]:
    """The claims of an RS256 ``token`` signed by ``key``, its ``exp`` not passed (``nbf`` reached). The audience
    and the other claims are the caller's to check."""
    header, claims = decode_unverified(token)
    if header.get("alg") != "RS256":
        raise JoseError(f"alg {header.get('alg')!r} is not RS256")
    signing_input, _, signature = token.rpartition(".")
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    except ValueError:
        raise JoseError("the signature is not base64url") from None
    if not key.verify(signing_input.encode(), raw):
        raise JoseError("the signature does not verify")
    # exp and nbf against ``now`` (the simulator's clock in tests), not PyJWT's wall clock
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, (int, float)) or exp + leeway_s < now):
        raise JoseError("the token has expired")
    if nbf is not None and (not isinstance(nbf, (int, float)) or nbf - leeway_s > now):
        raise JoseError("the token is not valid yet")
    return claims
