"""X.509 identification: proof of possession, chain, revocation, namespaces.

A client proves it holds a certificate's private key by signing a random
challenge the daemon issued on that very connection.  The chain it presents
is checked link by link: proxy certificates (RFC 3820, and legacy Globus
proxies whose subject is the issuer's plus `CN=proxy`, `CN=limited proxy` or
`CN=<digits>`) must each be signed by the certificate before them; the first
non-proxy certificate is the end-entity, which must chain (through any
intermediates given) to a CA of the configured directory or bundle, and on
through the directory up to its root.  Every certificate must be within its
validity dates.

The CA directory (`[auth] ca_path`, an OpenSSL hashed directory such as
/etc/grid-security/certificates) is read as the grid middleware reads it:

* `<hash>.<digit>`, `*.pem`, `*.crt`: the CA certificates.
* `<hash>.r<digit>`: CRLs (PEM or DER), each matched to its CA by issuer name
  and signature.  Every CA-issued certificate of the path (the end-entity,
  its intermediates, the directory's sub-CAs up to the root) is looked up in
  its issuer's CRLs; proxies are signed by the end-entity and in no CRL.  A
  CA with no CRL file is trusted without revocation checking, as Globus and
  canl do by default (fetch-crl installs one for every IGTF CA).  A CRL past
  its nextUpdate, before its lastUpdate, not signed by its CA's key, or
  unreadable makes the CA's certificates refused, as Globus GSI ("the
  available CRL has expired") and mod_ssl ("revoking all certificates until
  you get updated CRL") do: fetch-crl refreshes CRLs every few hours, long
  before they expire, so an expired one means the refresh has stopped --
  possibly because someone keeps a revocation from arriving -- and accepting
  with a warning would honour exactly the certificates the CRL is there to
  stop.
* `<hash>.namespaces` (EUGridPMA: `TO Issuer "DN"|SELF PERMIT|DENY Subject
  "regex"`) and `<hash>.signing_policy` (Globus: `access_id_CA X509 'DN'`,
  `pos_rights globus CA:sign`, `cond_subjects globus '"glob" ...'`): which
  subjects a CA may sign.  The namespaces rules that name the issuer decide
  (a PERMIT must match, no DENY may); without any, its signing_policy
  patterns (one must match); without either, the CA is not constrained --
  canl's default mode, which dCache and ARGUS use.  Matching is on the whole
  slash-form DN, ignoring case.  A policy file that cannot be parsed makes
  its CA's certificates refused: it was meant to constrain them.

The directory is re-read when one of its files changes (checked at every
authentication), so a CRL fetch-crl rewrites counts at once, without SIGHUP.

The identity is the end-entity's subject in slash form (dn.py).
"""

import datetime
import logging
import os
import re
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from ..errors import NotAuthorized
from .dn import escape

log = logging.getLogger("dynamod.auth")
PROXY_CERT_INFO = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
_LEGACY_PROXY_CN = re.compile(r"proxy|limited proxy|\d+")
_SHORT = {NameOID.EMAIL_ADDRESS: "emailAddress", NameOID.USER_ID: "UID",
          NameOID.DOMAIN_COMPONENT: "DC"}
MAX_CHAIN = 10
# The keys a chain may hold: an RSA key's cost to verify grows with its modulus and its
# public exponent (the usual one is 65537), and a peer not yet identified chooses both.
MAX_RSA_BITS = 8192
MAX_RSA_EXPONENT = (1 << 32) - 1
_HASHED = re.compile(r"([0-9a-f]{8})\.(\d+|r\d+|namespaces|signing_policy)")
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_NAMESPACE_RULE = re.compile(rf"TO\s+ISSUER\s+(?:{_QUOTED}|(SELF))\s+(PERMIT|DENY)\s+SUBJECT\s+"
                             rf"{_QUOTED}\s*(?:#.*)?", re.I)
_ACCESS_ID_CA = re.compile(r"access_id_CA\s+X509\s+'([^']+)'", re.I)
_POS_RIGHTS = re.compile(r"pos_rights\s+globus\s+CA:sign", re.I)
_COND_SUBJECTS = re.compile(r"cond_subjects\s+globus\s+'\s*((?:\"[^\"]*\"\s*)+)'", re.I)


class CertificateRefused(NotAuthorized):
    """The certificate or its proof was refused; the message says why."""


# ------------------------------------------------------------------ DN forms
def slash_dn(name: x509.Name) -> str:
    """A Name in slash form, most general component first (see the module's docstring)."""
    return "/" + "/".join("+".join(f"{_SHORT.get(a.oid) or a.rfc4514_attribute_name}="
                                   f"{escape(str(a.value))}" for a in rdn)
                          for rdn in name.rdns)


# -------------------------------------------------------- the CA directory
class Rule(NamedTuple):
    file: str
    permit: bool
    pattern: re.Pattern


class Trust:
    """The CA certificates of `path` (an OpenSSL hashed directory, or one bundle file),
    with the directory's CRLs and namespace policies; re-read when a file changes."""

    def __init__(self, path: str):
        self.path = path
        self._load(self._stamp())

    def __len__(self) -> int:
        return len(self.cas)

    def refresh(self):
        """Re-read the directory if a file in it changed (a CRL fetch-crl rewrote, a CA
        added); whole, or not at all."""
        try:
            if self._stamp() != self.stamp:
                self.__dict__.update(Trust(self.path).__dict__)
        except OSError as exc:
            log.error("cannot re-read %s (%s); keeping what was read before", self.path,
                      exc.strerror or exc)

    def _stamp(self) -> frozenset:
        if os.path.isfile(self.path):
            status = os.stat(self.path)
            return frozenset({(status.st_mtime_ns, status.st_size, status.st_ino)})
        stamp = set()
        with os.scandir(self.path) as entries:
            for entry in entries:
                try:
                    status = entry.stat()
                    stamp.add((entry.name, status.st_mtime_ns, status.st_size, status.st_ino))
                except OSError:   # a dangling link
                    stamp.add((entry.name,))
        return frozenset(stamp)

    def _load(self, stamp: frozenset):
        self.stamp = stamp
        self.crls = {}              # issuer Name -> [(file, CRL)]
        self.namespaces = {}        # issuer slash DN, case-folded -> [Rule]
        self.signing_policies = {}  # the same, from .signing_policy files
        self.unusable = {}          # CA subject Name -> why its certificates are refused
        if os.path.isfile(self.path):
            self.cas = _certificates(self.path)
            return
        names = sorted(os.listdir(self.path))
        cas, by_hash = [], {}       # "1a2b3c4d" -> the CA DNs of its <hash>.<digit> files
        for name in names:
            match = _HASHED.fullmatch(name)
            if match and match[2].isdigit() or name.endswith((".pem", ".crt")):
                certificates = _certificates(os.path.join(self.path, name))
                cas += certificates
                if match:
                    by_hash.setdefault(match[1], []).extend(c.subject for c in certificates)
        self.cas = list(dict.fromkeys(cas))  # a <hash>.0 is often a link to a .pem
        for name in names:
            match = _HASHED.fullmatch(name)
            if match and not match[2].isdigit():
                self._read_extra(os.path.join(self.path, name), match[2],
                                 by_hash.get(match[1], []))
        log.info("%s: %d CA certificates, %d CRLs, namespace policies for %d CAs, signing "
                 "policies for %d CAs", self.path, len(self.cas),
                 sum(map(len, self.crls.values())), len(self.namespaces),
                 len(self.signing_policies))

    def _read_extra(self, file: str, kind: str, cas: list):
        """A CRL or a policy file; one that cannot be read makes its CAs unusable."""
        what = {"namespaces": "namespaces policy", "signing_policy": "signing policy"}.get(
            kind, "CRL")
        try:
            if kind == "namespaces":
                _add(self.namespaces, _namespaces(file, [slash_dn(ca) for ca in cas]))
            elif kind == "signing_policy":
                _add(self.signing_policies, _signing_policy(file))
            else:
                crl = _crl(file)
                self.crls.setdefault(crl.issuer, []).append((file, crl))
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            if not cas:
                log.warning("%s: %s; no CA certificate of the same hash, ignored", file, reason)
                return
            for ca in cas:
                self.unusable.setdefault(ca, f"its {what} {file} cannot be read ({reason})")
            log.error("%s: %s; the certificates of %s are refused until it is fixed", file,
                      reason, ", ".join(slash_dn(ca) for ca in cas))

    # ---------------------------------------------------------------- checks
    def check_issued(self, cert: x509.Certificate, issuer: x509.Certificate,
                     now: datetime.datetime):
        """What the directory says about a certificate `issuer` signed: the issuer's
        files must be readable, its CRLs current and without the certificate, and the
        certificate's subject within its namespace."""
        ca = slash_dn(issuer.subject)
        if issuer.subject in self.unusable:
            raise CertificateRefused(f"CA {ca} cannot be relied on: "
                                     f"{self.unusable[issuer.subject]}; its certificates are "
                                     f"refused until the file is fixed")
        self._check_crls(cert, issuer, ca, now)
        self._check_namespace(cert, ca)

    def _check_crls(self, cert, issuer, ca: str, now: datetime.datetime):
        listed = self.crls.get(issuer.subject, [])
        key = issuer.public_key()
        signed = [(file, crl) for file, crl in listed if crl.is_signature_valid(key)]
        if listed and not signed:
            raise CertificateRefused(
                f"the CRL {listed[0][0]} of CA {ca} is not signed by the CA's key; its "
                f"certificates are refused until the CRL is replaced (fetch-crl)")
        for file, crl in signed:
            if crl.next_update_utc is not None and now > crl.next_update_utc:
                raise CertificateRefused(
                    f"the CRL {file} of CA {ca} expired on {crl.next_update_utc:%Y-%m-%d %H:%M} "
                    f"UTC: revocations cannot be checked, so the CA's certificates are refused "
                    f"until it is refreshed (fetch-crl)")
            if now < crl.last_update_utc:
                raise CertificateRefused(
                    f"the CRL {file} of CA {ca} is not valid before "
                    f"{crl.last_update_utc:%Y-%m-%d %H:%M} UTC (is the clock right?)")
            revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if revoked is not None:
                raise CertificateRefused(
                    f"certificate {slash_dn(cert.subject)} (serial {cert.serial_number:#x}) was "
                    f"revoked on {revoked.revocation_date_utc:%Y-%m-%d %H:%M} UTC"
                    f"{_reason(revoked)} by CA {ca} (CRL {file})")

    def _check_namespace(self, cert, ca: str):
        rules = self.namespaces.get(ca.casefold()) or self.signing_policies.get(ca.casefold())
        if not rules:
            return
        subject = slash_dn(cert.subject)
        denying = [r.file for r in rules if not r.permit and r.pattern.fullmatch(subject)]
        if denying or not any(r.permit and r.pattern.fullmatch(subject) for r in rules):
            files = sorted(set(denying or (r.file for r in rules)))
            raise CertificateRefused(
                f"{subject} is outside the namespace of CA {ca}: {', '.join(files)} "
                f"{'denies' if denying else 'does not permit'} it")


def load_trust(path: str) -> Trust:
    """The CA certificates, CRLs and policies of an OpenSSL hashed directory, or the CA
    certificates of one bundle file (OSError when it cannot be read)."""
    return Trust(path)


def _certificates(file: str) -> list[x509.Certificate]:
    with open(file, "rb") as f:
        data = f.read()
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        log.warning("%s: not a PEM certificate, ignored", file)
        return []


def _crl(file: str) -> x509.CertificateRevocationList:
    with open(file, "rb") as f:
        data = f.read()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _add(table: dict, rules: list):
    for issuer, rule in rules:
        table.setdefault(issuer, []).append(rule)


def _logical_lines(file: str) -> list[tuple[int, str]]:
    """(number, text) of a policy file's lines, without blank and comment lines, and
    with the lines a trailing backslash continues joined."""
    with open(file, encoding="utf-8") as f:
        text = f.read()
    lines, parts, first = [], [], 0
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not parts:
            if not line or line.startswith("#"):
                continue
            first = number
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        lines.append((first, " ".join(parts + [line])))
        parts = []
    if parts:
        lines.append((first, " ".join(parts)))
    return lines


def _namespaces(file: str, self_dns: list) -> list[tuple[str, Rule]]:
    """(issuer, rule) of an EUGridPMA .namespaces file; SELF is the CA of its hash."""
    rules = []
    for number, line in _logical_lines(file):
        match = _NAMESPACE_RULE.fullmatch(line)
        if match is None:
            raise ValueError(f"line {number}: expected TO Issuer \"DN\" PERMIT|DENY Subject "
                             f"\"regex\", found {line[:80]!r}")
        issuers = self_dns if match[2] else [match[1]]
        if not issuers:
            raise ValueError(f"line {number}: SELF, and no CA certificate has this file's hash")
        rule = Rule(file, match[3].upper() == "PERMIT", _compile(match[4], number))
        rules += [(issuer.casefold(), rule) for issuer in issuers]
    return rules


def _signing_policy(file: str) -> list[tuple[str, Rule]]:
    """(issuer, rule) of a Globus .signing_policy file: blocks of access_id_CA X509 'DN',
    pos_rights globus CA:sign, cond_subjects globus '"glob" ...'."""
    rules, issuer, step = [], None, "access_id_CA"
    for number, line in _logical_lines(file):
        if step != "cond_subjects" and (match := _ACCESS_ID_CA.fullmatch(line)):
            if step == "pos_rights":
                raise ValueError(f"line {number}: access_id_CA '{issuer}' has no pos_rights")
            issuer, step = match[1], "pos_rights"
        elif step == "pos_rights" and _POS_RIGHTS.fullmatch(line):
            step = "cond_subjects"
        elif step == "cond_subjects" and (match := _COND_SUBJECTS.fullmatch(line)):
            rules += [(issuer.casefold(), Rule(file, True, _compile(_glob(glob), number)))
                      for glob in re.findall(r'"([^"]*)"', match[1])]
            step = "access_id_CA"
        else:
            expected = {"access_id_CA": "access_id_CA X509 'DN'",
                        "pos_rights": "pos_rights globus CA:sign",
                        "cond_subjects": "cond_subjects globus '\"pattern\" ...'"}[step]
            raise ValueError(f"line {number}: expected {expected}, found {line[:80]!r}")
    if step != "access_id_CA":
        raise ValueError(f"access_id_CA '{issuer}' has no {step}")
    return rules


def _glob(pattern: str) -> str:
    """A Globus subject pattern (`*`: any characters, `?`: one) as a regular expression."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def _compile(pattern: str, number: int) -> re.Pattern:
    try:
        return re.compile(pattern, re.I | re.S)
    except re.error as exc:
        raise ValueError(f"line {number}: bad pattern {pattern!r} ({exc})") from None


def _reason(revoked) -> str:
    try:
        return f" ({revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.value})"
    except x509.ExtensionNotFound:
        return ""


# ------------------------------------------------------------ verification
def is_proxy(cert: x509.Certificate, issuer: x509.Certificate | None) -> bool:
    try:
        cert.extensions.get_extension_for_oid(PROXY_CERT_INFO)
        return True
    except x509.ExtensionNotFound:
        pass
    if issuer is None or _is_ca(issuer):   # a CA issues end-entity certificates, whatever
        return False                         # their name (`CN=<CA's name>/CN=12345`)
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


def verify_chain(chain: list[x509.Certificate], trust: Trust,
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
        if _is_ca(issuer):
            raise CertificateRefused(f"proxy {slash_dn(cert.subject)} is signed by a CA "
                                     f"certificate, {slash_dn(issuer.subject)}: a proxy is "
                                     f"signed by the certificate it stands for")
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
    trust.refresh()
    for cert, issuer in _path_to_trust(end_entity, chain[position + 1:], trust.cas, now):
        trust.check_issued(cert, issuer, now)
    return slash_dn(end_entity.subject)


def _path_to_trust(cert, intermediates, cas, now) -> list[tuple]:
    """(certificate, its issuer) from the end-entity to a CA of the directory (through
    intermediates the client gave), and on through the directory up to its root."""
    links, current, trusted = [], cert, False
    for _ in range(MAX_CHAIN):
        issuer = next((ca for ca in cas if ca.subject == current.issuer
                       and _signed_by(current, ca)), None)
        if issuer is None and trusted:
            return links    # a CA of the directory whose own issuer is not there
        if issuer is not None:
            trusted = True
        else:
            issuer = next((c for c in intermediates
                           if c.subject == current.issuer and _signed_by(current, c)), None)
            if issuer is None or not _is_ca(issuer) or issuer.subject == issuer.issuer:
                raise CertificateRefused(
                    f"{slash_dn(cert.subject)} is not issued by a trusted CA "
                    f"(issuer {slash_dn(current.issuer)} is not in the CA directory)")
        _check_dates(issuer, now, "CA certificate" if trusted else "intermediate CA certificate")
        links.append((current, issuer))
        if issuer.subject == issuer.issuer:
            return links    # the root
        current = issuer
    raise CertificateRefused("certificate chain too long")


def _is_ca(cert) -> bool:
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    except x509.ExtensionNotFound:
        return False


def parse_chain(pem: str) -> list[x509.Certificate]:
    """The certificates, each with a key this daemon verifies at a bounded cost."""
    try:
        chain = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise CertificateRefused(f"the certificate chain is not valid PEM: {exc}") from None
    for cert in chain:
        problem = key_refused(cert.public_key())
        if problem:
            raise CertificateRefused(f"{slash_dn(cert.subject)}: {problem}")
    return chain


def key_refused(key) -> str | None:
    """Why a certificate's key is not taken (None: it is)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size > MAX_RSA_BITS:
            return f"an RSA key of {key.key_size} bits (at most {MAX_RSA_BITS})"
        if key.public_numbers().e > MAX_RSA_EXPONENT:
            return (f"an RSA public exponent of {key.public_numbers().e.bit_length()} bits "
                    f"(at most 32; the usual one is 65537)")
        return None
    if isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey)):
        return None
    return f"a key of an unsupported type ({type(key).__name__}: RSA, EC or Ed25519)"
