"""A test PKI built with `cryptography`: names, keys, certificates and proxies, and the
proof of possession a client signs."""

import base64
import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from dynamoclient import x509 as client_x509
from dynamoclient.connection import CHALLENGE_PREFIX

JANE = "/DC=org/DC=example/OU=Users/CN=Jane Doe"
STRANGER = "/DC=org/DC=example/OU=Users/CN=Nobody Known"
NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)

_OIDS = {"DC": NameOID.DOMAIN_COMPONENT, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
         "O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
# ProxyCertInfo ::= SEQUENCE { proxyPolicy SEQUENCE { policyLanguage id-ppl-inheritAll } }
INHERIT_ALL = bytes.fromhex("300c300a06082b06010505071501")


def name(dn: str) -> x509.Name:
    """The x509.Name whose slash form is `dn` (most general component first)."""
    return x509.Name([x509.NameAttribute(_OIDS[k], v)
                      for k, v in (part.split("=", 1) for part in dn.strip("/").split("/"))])


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


class Credential:
    """A certificate, its key, and the certificates that issued it (nearest first)."""

    def __init__(self, cert, key, issuers=()):
        self.cert, self.key, self.issuers = cert, key, list(issuers)

    @property
    def chain(self) -> list:
        return [self.cert, *self.issuers]


def issue(subject, key, issuer: Credential | None, not_before=NOW - DAY, not_after=NOW + 30 * DAY,
          ca=False, proxy_info=False, issuer_name=None) -> Credential:
    """A certificate for `key`, signed by `issuer` (self-signed when None)."""
    signer = issuer.key if issuer else key
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_name or (issuer.cert.subject if issuer else subject))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if proxy_info:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(PROXY_CERT_INFO, INHERIT_ALL), critical=True)
    cert = builder.sign(signer, hashes.SHA256())
    return Credential(cert, key, issuer.chain if issuer else ())


def proxy_of(parent: Credential, cn="proxy", rfc3820=False, key=None, **kwargs) -> Credential:
    """A proxy: the parent's subject plus one CN, signed by the parent's key."""
    subject = x509.Name([*parent.cert.subject, x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return issue(subject, key or ec_key(), parent, proxy_info=rfc3820, **kwargs)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, traditional=False) -> bytes:
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if traditional
           else serialization.PrivateFormat.PKCS8)
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_private(path: Path, data: bytes):
    """A file only its owner may read, as a proxy or a key must be."""
    path.touch(mode=0o600)
    path.write_bytes(data)


def prove(key_pem: bytes, challenge_b64: str) -> str:
    """The `authenticate` signature of a challenge (base64), as the real client signs it."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    return base64.b64encode(client_x509.sign(key, CHALLENGE_PREFIX
                                             + base64.b64decode(challenge_b64))).decode()
