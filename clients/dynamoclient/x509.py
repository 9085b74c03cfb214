"""Client side of X.509 identification: read the certificate, sign the challenge.

A grid proxy file (`$X509_USER_PROXY`, else `/tmp/x509up_u<uid>`: found by
`paths.default_proxy`) holds the proxy certificate, its key and the chain in
one PEM file; `--cert`/`--key` name them explicitly.  The file that holds the
private key must be the user's own and closed to group and others, as Globus
requires: in the sticky /tmp another account can create `x509up_u<uid>` before
the user does, and a client that used it would act under that account's
identity (which then sees the client's applications and their output).  This
module, and `cryptography`, are imported only when a certificate is used, so a
client without one stays on the standard library and starts sooner.
"""

import os
import re

_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S)


class Unreadable(ValueError):
    """A file of the certificate's that cannot be read; the message names it whole."""


def load(cert_path: str, key_path: str | None = None) -> tuple[str, object]:
    """(the certificate chain as PEM text, the private key) from the files; ValueError
    says why they cannot be used."""
    data, status = _read(cert_path, "certificate")
    chain = _CERT.findall(data)
    if not chain:
        raise ValueError(f"no certificate in {cert_path}")
    if key_path:
        data, status = _read(key_path, "key")
    key = _KEY.search(data)
    if key is None:
        raise ValueError(f"no private key in {key_path or cert_path}")
    _check_private(key_path or cert_path, status)
    return b"\n".join(chain).decode() + "\n", _private_key(key.group(0), key_path or cert_path)


def _read(path: str, what: str) -> tuple[bytes, os.stat_result]:
    """The content of a file and the status of that very file (not of a name that may
    have been replaced in between); Unreadable in the clients' words for such a file."""
    try:
        with open(path, "rb") as f:
            return f.read(), os.fstat(f.fileno())
    except OSError as exc:
        raise Unreadable(f"cannot read the {what} {path}: {exc.strerror}") from None


def _check_private(path: str, status: os.stat_result):
    """A file holding a private key must be the user's, and closed to group and others."""
    uid = os.getuid()
    if status.st_uid != uid:
        import pwd

        try:
            owner = f"uid {status.st_uid} ({pwd.getpwuid(status.st_uid).pw_name})"
        except KeyError:
            owner = f"uid {status.st_uid}"
        raise ValueError(f"{path} holds a private key but belongs to {owner}, not to you (uid "
                         f"{uid}): another account may have created it to have you use its "
                         f"identity.  Make a proxy of your own elsewhere (voms-proxy-init --out "
                         f"FILE, or grid-proxy-init -out FILE), set X509_USER_PROXY=FILE, and "
                         f"have {path} removed")
    if status.st_mode & 0o077:
        raise ValueError(f"{path} holds a private key but its mode {status.st_mode & 0o777:04o} "
                         f"opens it to group or others; make it yours alone: chmod 600 {path}")


def _private_key(pem: bytes, path: str):
    """The key, loaded before the daemon is asked anything, so that an unusable one (a
    grid user key protected by a passphrase, most often) is reported, not a traceback."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # how cryptography says that the key needs a passphrase
        raise ValueError(f"the private key in {path} is protected by a passphrase; use a "
                         f"proxy (voms-proxy-init or grid-proxy-init) instead") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                            ed25519.Ed25519PrivateKey)):
        raise ValueError(f"unsupported key type {type(key).__name__} in {path}")
    return key


def sign(key, message: bytes) -> bytes:
    """Sign `message` with the key: RSA PKCS#1 v1.5 or ECDSA over SHA-256, or Ed25519."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    return key.sign(message)  # Ed25519, the only other kind _private_key lets through
