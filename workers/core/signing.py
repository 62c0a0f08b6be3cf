"""Who vouches for a model version: Ed25519 signatures over its manifest.

The manifest names the artifact and its sha256, so a valid signature over the manifest's
exact bytes vouches for the artifact too. The signature lives beside the manifest in
``manifest.json.sig`` (JSON: the signer's key id and the base64 signature). A worker given
trusted public keys (``WORKERS_TRUSTED_KEYS``) refuses, before reading the artifact, a
manifest that is unsigned, signed by another key, or changed after signing.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from workers.errors import ConfigError, ModelIntegrityError

SIGNATURE_FILE = "manifest.json.sig"


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair() -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM) of a new Ed25519 key."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def load_private_key(pem: bytes, source: str = "private key") -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{source}: an Ed25519 key is needed, got {type(key).__name__}")
    return key


def load_public_key(pem: bytes, source: str = "public key") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{source}: an Ed25519 key is needed, got {type(key).__name__}")
    return key


def sign(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The contents of ``manifest.json.sig`` for these exact manifest bytes."""
    document = {"key_id": key_id(private_key.public_key()),
                "signature": base64.b64encode(private_key.sign(manifest_bytes)).decode()}
    return (json.dumps(document, indent=2) + "\n").encode()


def verify(manifest_bytes: bytes, signature_file: bytes | None, trusted: dict[str, Ed25519PublicKey],
           source: str) -> str:
    """The key id of a trusted key whose signature over ``manifest_bytes`` is valid; raises otherwise."""
    if signature_file is None:
        raise ModelIntegrityError(f"{source} is not signed ({SIGNATURE_FILE} missing) and trusted keys are "
                                  "configured: refusing to load it (sign it with `workers models sign`)")
    try:
        document: Any = json.loads(signature_file)
        signer, signature = str(document["key_id"]), base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelIntegrityError(f"{source}: unreadable {SIGNATURE_FILE} ({exc})") from None
    key = trusted.get(signer)
    if key is None:
        raise ModelIntegrityError(f"{source} is signed by key {signer}, which is not trusted "
                                  f"(trusted: {sorted(trusted) or 'none'})")
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise ModelIntegrityError(f"{source}: the signature of key {signer} does not match the manifest "
                                  "(changed after signing?)") from None
    return signer
