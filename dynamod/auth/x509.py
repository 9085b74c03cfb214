"""X.509 identification: proof of possession, chain verification, DN reduction.

A client proves it holds a certificate's private key by signing a random
challenge the daemon issued on that very connection.  The chain it presents
is checked link by link: proxy certificates (RFC 3820, and legacy Globus
proxies whose subject is the issuer's plus `CN=proxy`, `CN=limited proxy` or
`CN=<digits>`) must each be signed by the certificate before them; the first
non-proxy certificate is the end-entity, which must chain (through any
intermediates given) to a CA of the configured directory or bundle.  Every
certificate must be within its validity dates.  The identity is the
end-entity's subject in OpenSSL's slash form, `/DC=ch/DC=cern/OU=Users/CN=...`.
"""

import datetime
import os
import re

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from ..errors import NotAuthorized

PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
_LEGACY_PROXY_CN = re.compile(r"proxy|limited proxy|\d+")
_SHORT = {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.USER_ID: "UID",
          NameOID.DOMAIN_COMPONENT: "DC"}
MAX_CHAIN = 10


class CertificateRefused(NotAuthorized):
    """The certificate or its proof was refused; the message says why."""


def slash_dn(name: x509.Name) -> str:
    """A Name in OpenSSL's slash form, most general component first."""
    parts = []
    for rdn in name.rdns:
        for attribute in rdn:
            key = _SHORT.get(attribute.oid) or attribute.rfc4514_attribute_name
            parts.append(f"{key}={attribute.value}")
    return "/" + "/".join(parts)


def normalize_dn(dn: str) -> str:
    """Accept a DN in slash form or in comma form (RFC 4514, CN first) as slash form."""
    dn = dn.strip()
    if dn.startswith("/"):
        return dn
    parts = [p.strip() for p in re.split(r"(?<!\\),", dn) if p.strip()]
    if not parts or any("=" not in p for p in parts):
        raise ValueError(f"not a distinguished name: {dn!r}")
    parts = [re.sub(r"\s*=\s*", "=", p, count=1).replace("\\,", ",") for p in parts]
    if parts[0].upper().startswith("CN="):
        parts.reverse()
    return "/" + "/".join(parts)


def load_trust(path: str) -> list[x509.Certificate]:
    """The CA certificates of an OpenSSL hashed directory or of one bundle file."""
    files = [path] if os.path.isfile(path) else [
        os.path.join(path, f) for f in sorted(os.listdir(path))
        if re.fullmatch(r"[0-9a-f]{8}\.\d+|.*\.(pem|crt)", f)]
    cas = []
    for file in files:
        with open(file, "rb") as f:
            data = f.read()
        try:
            cas.extend(x509.load_pem_x509_certificates(data))
        except ValueError:
            continue  # not a certificate (a CRL, a signing policy): not part of the trust
    return cas


def is_proxy(cert: x509.Certificate, issuer: x509.Certificate | None) -> bool:
    try:
        cert.extensions.get_extension_for_oid(PROXY_CERT_INFO)
        return True
    except x509.ExtensionNotFound:
        pass
    if issuer is None:
        return False
    subject, parent = list(cert.subject.rdns), list(issuer.subject.rdns)
    if len(subject) != len(parent) + 1 or subject[:-1] != parent:
        return False
    last = list(subject[-1])
    return (len(last) == 1 and last[0].oid == NameOID.COMMON_NAME
            and bool(_LEGACY_PROXY_CN.fullmatch(str(last[0].value))))


def _check_dates(cert: x509.Certificate, now: datetime.datetime, what: str):
    if now < cert.not_valid_before_utc:
        raise CertificateRefused(f"{what} {slash_dn(cert.subject)} is not valid before "
                                 f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if now > cert.not_valid_after_utc:
        raise CertificateRefused(f"{what} {slash_dn(cert.subject)} expired on "
                                 f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


def _signed_by(cert, issuer) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def verify_possession(cert: x509.Certificate, challenge: bytes, signature: bytes):
    """The signature over the challenge must come from the certificate's key."""
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, challenge, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, challenge)
        else:
            raise CertificateRefused(f"unsupported key type {type(key).__name__}")
    except InvalidSignature:
        raise CertificateRefused(
            f"the signature does not match the key of {slash_dn(cert.subject)}: no proof of "
            f"possession of its private key (or a signature of another connection's "
            f"challenge)") from None


def verify_chain(chain: list[x509.Certificate], trust: list[x509.Certificate],
                 now: datetime.datetime | None = None) -> str:
    """Check the chain (leaf first) and return the end-entity's slash DN."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not chain:
        raise CertificateRefused("no certificate was presented")
    if len(chain) > MAX_CHAIN:
        raise CertificateRefused(f"certificate chain longer than {MAX_CHAIN}")
    position = 0
    while position + 1 < len(chain) and is_proxy(chain[position], chain[position + 1]):
        cert, issuer = chain[position], chain[position + 1]
        _check_dates(cert, now, "proxy certificate")
        if not _signed_by(cert, issuer):
            raise CertificateRefused(f"proxy {slash_dn(cert.subject)} is not signed by "
                                     f"{slash_dn(issuer.subject)}")
        position += 1
    end_entity = chain[position]
    if is_proxy(end_entity, None):
        raise CertificateRefused(f"proxy {slash_dn(end_entity.subject)} comes without the "
                                 f"certificate that signed it")
    _check_dates(end_entity, now, "certificate")
    _verify_to_trust(end_entity, chain[position + 1:], trust, now)
    return slash_dn(end_entity.subject)


def _verify_to_trust(cert, intermediates, trust, now):
    current = cert
    for _ in range(MAX_CHAIN):
        for ca in trust:
            if ca.subject == current.issuer and _signed_by(current, ca):
                _check_dates(ca, now, "CA certificate")
                return
        issuer = next((c for c in intermediates
                       if c.subject == current.issuer and _signed_by(current, c)), None)
        if issuer is None or not _is_ca(issuer):
            raise CertificateRefused(
                f"{slash_dn(cert.subject)} is not issued by a trusted CA "
                f"(issuer {slash_dn(current.issuer)} is not in the CA directory)")
        _check_dates(issuer, now, "intermediate CA certificate")
        current = issuer
    raise CertificateRefused("certificate chain too long")


def _is_ca(cert) -> bool:
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    except x509.ExtensionNotFound:
        return False


def parse_chain(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise CertificateRefused(f"the certificate chain is not valid PEM: {exc}") from None
