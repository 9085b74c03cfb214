"""X.509 as the grid checks it: CRLs, namespace policies, unambiguous DNs; and the proxy
files the clients refuse.

The PKI is built here with `cryptography` and laid out as fetch-crl and the
IGTF distribution lay out /etc/grid-security/certificates: `<hash>.0` CA
certificates, `<hash>.r0` CRLs, `<hash>.namespaces` (EUGridPMA) and
`<hash>.signing_policy` (Globus) files.  A root CA signs the grid CA (in the
directory) and a second CA the client presents in its chain; three more roots
each sign jane's DN: one whose namespaces policy does not allow it, one whose
signing policy does not, one without either file.  Every test runs a real
dynamod on its own copy of the directory, and the real clients.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from dynamoclient.connection import Client, RemoteError
from dynamod.auth.dn import normalize_dn
from dynamod.auth.x509 import slash_dn
from support.daemon import Daemon
from support.nobody import as_nobody
from support.pki import (DAY, JANE, NOW, Credential, ec_key, issue, name, pem, proxy_of,
                         write_private)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")

ROOT_CA = "/DC=org/DC=example/CN=Example Root CA"
GRID_CA = "/DC=org/DC=example/CN=Example Grid CA"
LOST_CA = "/DC=org/DC=example/CN=Example Lost CA"
OTHER_CA = "/DC=net/DC=other/CN=Other CA"
GLOBUS_CA = "/DC=net/DC=globus/CN=Globus CA"
LAX_CA = "/DC=net/DC=lax/CN=Lax CA"
OLGA = "/DC=net/DC=other/OU=People/CN=Olga"
BANNED = "/DC=net/DC=other/OU=Banned/CN=Bert"
GUS = "/DC=net/DC=globus/CN=Gus"
REVOKED_ON = NOW - 2 * DAY
SLASH_IN_VALUE = x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
                            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                               "Users/CN=Jane Doe")])
MULTI_VALUED = x509.Name([
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Users"),
                                    x509.NameAttribute(NameOID.COMMON_NAME, "Jane Doe")])])

NAMESPACES = {  # hash -> .namespaces, as the IGTF writes them (comments, continuations)
    "aaaa0001": """\
##############################################################################
#NAMESPACES-VERSION: 1.0
#
# CA alias    : Example-Root
#
TO Issuer SELF \\
  PERMIT Subject "/DC=org/DC=example/CN=Example .* CA"
""",
    "aaaa0002": f"""\
#NAMESPACES-VERSION: 1.0
TO Issuer "{GRID_CA}" \\
  PERMIT Subject "/DC=org/DC=example/.*"
""",
    "bbbb0001": f"""\
#NAMESPACES-VERSION: 1.0
TO Issuer "{OTHER_CA}" PERMIT Subject "/DC=net/DC=other/.*"
to issuer self deny subject "/dc=net/dc=other/ou=banned/.*"   # case does not matter
""",
}
SIGNING_POLICIES = {
    "cccc0001": f"""\
# EACL for the Globus CA
 access_id_CA      X509         '{GLOBUS_CA}'
 pos_rights        globus        CA:sign
 cond_subjects     globus       '"/DC=net/DC=globus/*" "/O=Globus/*"'
""",
}


def crl(issuer: Credential, revoked=(), last_update=NOW - DAY, next_update=NOW + 7 * DAY,
        key=None) -> bytes:
    """The issuer's CRL (PEM), listing `revoked`; signed with `key` to forge one."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.cert.subject)
               .last_update(last_update).next_update(next_update))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(REVOKED_ON)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False).build())
    return builder.sign(key or issuer.key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM)


def replace(path: Path, data: bytes | str):
    """Write a file whole, as fetch-crl does (a new file renamed over the old one)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(fresh, path)


class Grid:
    """The CA directory and the credentials, with their files."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca_dir = directory / "certificates"
        self.ca_dir.mkdir()
        root = issue(name(ROOT_CA), ec_key(), None, not_after=NOW + 3650 * DAY, ca=True)
        self.grid_ca = issue(name(GRID_CA), ec_key(), root, ca=True)
        lost_ca = issue(name(LOST_CA), ec_key(), root, ca=True)   # revoked; not in the directory
        other, globus, lax = (issue(name(dn), ec_key(), None, ca=True)
                              for dn in (OTHER_CA, GLOBUS_CA, LAX_CA))
        jane = issue(name(JANE), ec_key(), self.grid_ca)
        revoked = issue(name(JANE), ec_key(), self.grid_ca)
        self.credentials = {
            "jane": jane,
            "revoked": revoked,
            "proxy of the revoked": proxy_of(revoked, "1111", rfc3820=True),
            "under a revoked CA": issue(name(JANE), ec_key(), lost_ca),
            "jane by the other CA": issue(name(JANE), ec_key(), other),
            "olga": issue(name(OLGA), ec_key(), other),
            "banned": issue(name(BANNED), ec_key(), other),
            "jane by the globus CA": issue(name(JANE), ec_key(), globus),
            "gus": issue(name(GUS), ec_key(), globus),
            "jane by the lax CA": issue(name(JANE), ec_key(), lax),
            "slash in a value": issue(SLASH_IN_VALUE, ec_key(), self.grid_ca),
            "multi-valued RDN": issue(MULTI_VALUED, ec_key(), self.grid_ca),
        }
        self.revoked = {"revoked": (revoked.cert, GRID_CA, "aaaa0002.r0"),
                        "proxy of the revoked": (revoked.cert, GRID_CA, "aaaa0002.r0"),
                        "under a revoked CA": (lost_ca.cert, ROOT_CA, "aaaa0001.r0")}
        self.crls = {"aaaa0001": crl(root, [lost_ca.cert]),
                     "aaaa0002": crl(self.grid_ca, [revoked.cert])}
        for hash_, ca in (("aaaa0001", root), ("aaaa0002", self.grid_ca), ("bbbb0001", other),
                          ("cccc0001", globus), ("dddd0001", lax)):
            (self.ca_dir / f"{hash_}.0").write_bytes(pem(ca.cert))
        for hash_, data in self.crls.items():
            (self.ca_dir / f"{hash_}.r0").write_bytes(data)
        for hash_, text in NAMESPACES.items():
            (self.ca_dir / f"{hash_}.namespaces").write_text(text)
        for hash_, text in SIGNING_POLICIES.items():
            (self.ca_dir / f"{hash_}.signing_policy").write_text(text)
        self.in_directory = {c.cert for c in (root, self.grid_ca, other, globus, lax)}
        self.files = {label: self._write(label, c) for label, c in self.credentials.items()}

    def _write(self, label, credential: Credential) -> dict:
        """Client() arguments: the certificate with the issuers the directory lacks (and,
        for a proxy, its key), or the certificate and a key file beside it."""
        path = self.dir / (label.replace(" ", "-") + ".pem")
        issuers = b"".join(pem(c) for c in credential.issuers if c not in self.in_directory)
        key = credential.key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
        if "proxy" in label:
            write_private(path, pem(credential.cert) + key + issuers)
            return {"cert": str(path), "key": None}
        path.write_bytes(pem(credential.cert) + issuers)
        write_private(path.with_suffix(".key"), key)
        return {"cert": str(path), "key": str(path.with_suffix(".key"))}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Grid:
    return Grid(tmp_path_factory.mktemp("grid"))


@pytest.fixture
def grid_daemon(grid):
    """A dynamod trusting its own copy of the CA directory (`.ca_dir`); jane (admin), olga,
    bert and gus registered."""
    root = Path(tempfile.mkdtemp(prefix="dyn-", dir="/tmp"))
    os.chmod(root, 0o755)
    ca_dir = root / "certificates"
    shutil.copytree(grid.ca_dir, ca_dir)
    config = root / "dynamod.toml"
    config.write_text(f'[auth]\nca_path = "{ca_dir}"\n')
    daemon = Daemon(root / "state", str(root / "dynamod.sock"), ["--config", str(config)])
    daemon.start()
    daemon.ca_dir = ca_dir
    for user, dn in (("jane", JANE), ("olga", OLGA), ("bert", BANNED), ("gus", GUS)):
        daemon.call("set_user", name=user, dns=[dn])
    daemon.call("grant_role", user="jane", role="admin", target="all")
    yield daemon
    daemon.stop()
    shutil.rmtree(root, ignore_errors=True)


def whoami(daemon, files: dict) -> str:
    with Client(daemon.socket, **files) as client:
        return client.call("whoami")["user"]


def refusal(daemon, files: dict) -> str:
    """The message of the daemon's refusal of a certificate."""
    with pytest.raises(RemoteError) as raised:
        Client(daemon.socket, **files)
    assert (raised.value.code, raised.value.details["needs"]) == ("not_authorized", "identity")
    return raised.value.message


# ------------------------------------------------------------------- CRLs
@pytest.mark.parametrize("label", ["revoked", "proxy of the revoked", "under a revoked CA"])
def test_a_revoked_certificate_is_refused_naming_it(grid_daemon, grid, label):
    cert, ca, crl_file = grid.revoked[label]
    expected = (f"certificate {slash_dn(cert.subject)} (serial {cert.serial_number:#x}) was "
                f"revoked on {REVOKED_ON:%Y-%m-%d %H:%M} UTC (keyCompromise) by CA {ca} "
                f"(CRL {grid_daemon.ca_dir / crl_file})")
    assert refusal(grid_daemon, grid.files[label]) == expected
    files = grid.files[label]
    options = ["--cert", files["cert"], *(["--key", files["key"]] if files["key"] else [])]
    refused = grid_daemon.inject("--site", "T2_NEVER", *options, check=False)
    assert refused.returncode == 1 and expected in refused.stderr
    assert expected in grid_daemon.log()
    assert whoami(grid_daemon, grid.files["jane"]) == "jane"  # her other certificate


CRL_FAULTS = {  # what is written over the grid CA's CRL -> what the refusal says
    "expired": (lambda g: crl(g.grid_ca, last_update=NOW - 9 * DAY, next_update=NOW - DAY),
                f"aaaa0002.r0 of CA {GRID_CA} expired on {NOW - DAY:%Y-%m-%d %H:%M} UTC: "
                f"revocations cannot be checked"),
    "not yet valid": (lambda g: crl(g.grid_ca, last_update=NOW + DAY),
                      f"aaaa0002.r0 of CA {GRID_CA} is not valid before"),
    "forged": (lambda g: crl(g.grid_ca, key=ec_key()),
               f"aaaa0002.r0 of CA {GRID_CA} is not signed by the CA's key"),
    "unreadable": (lambda g: b"-----BEGIN X509 CRL-----\ntruncated\n",
                   f"CA {GRID_CA} cannot be relied on: its CRL"),
}


@pytest.mark.parametrize("fault", CRL_FAULTS)
def test_a_crl_that_cannot_be_trusted_refuses_its_cas_certificates_until_replaced(
        grid_daemon, grid, fault):
    make, fragment = CRL_FAULTS[fault]
    crl_file = grid_daemon.ca_dir / "aaaa0002.r0"
    assert whoami(grid_daemon, grid.files["jane"]) == "jane"
    replace(crl_file, make(grid))          # as fetch-crl would: no SIGHUP
    message = refusal(grid_daemon, grid.files["jane"])
    assert fragment in message and str(crl_file) in message
    assert whoami(grid_daemon, grid.files["olga"]) == "olga"  # another CA: unaffected
    replace(crl_file, grid.crls["aaaa0002"])
    assert whoami(grid_daemon, grid.files["jane"]) == "jane"


# ------------------------------------------------------------- namespaces
NAMESPACE_REFUSALS = {
    "jane by the other CA": f"{JANE} is outside the namespace of CA {OTHER_CA}: "
                            f"{{dir}}/bbbb0001.namespaces does not permit it",
    "banned": f"{BANNED} is outside the namespace of CA {OTHER_CA}: "
              f"{{dir}}/bbbb0001.namespaces denies it",
    "jane by the globus CA": f"{JANE} is outside the namespace of CA {GLOBUS_CA}: "
                             f"{{dir}}/cccc0001.signing_policy does not permit it",
}


@pytest.mark.parametrize("label", NAMESPACE_REFUSALS)
def test_a_subject_outside_its_cas_namespace_is_refused(grid_daemon, grid, label):
    expected = NAMESPACE_REFUSALS[label].format(dir=grid_daemon.ca_dir)
    assert refusal(grid_daemon, grid.files[label]) == expected
    assert expected in grid_daemon.log()


def test_subjects_inside_their_cas_namespace_are_accepted(grid_daemon, grid):
    # olga: the other CA's namespaces; gus: the globus CA's signing policy; jane: the grid
    # CA's namespaces, and the root's for the grid CA itself.
    for label, user in (("olga", "olga"), ("gus", "gus"), ("jane", "jane")):
        assert whoami(grid_daemon, grid.files[label]) == user


def test_a_ca_without_policy_files_may_sign_any_subject(grid_daemon, grid):
    """The grid's default: neither .namespaces nor .signing_policy, no constraint."""
    assert whoami(grid_daemon, grid.files["jane by the lax CA"]) == "jane"


@pytest.mark.parametrize("kind, text, fragment", [
    ("namespaces", 'TO Issuer SELF ALLOW Subject "/DC=org/.*"\n',
     "line 1: expected TO Issuer"),
    ("signing_policy", f"access_id_CA X509 '{GRID_CA}'\ncond_subjects globus '\"/*\"'\n",
     "line 2: expected pos_rights globus CA:sign"),
])
def test_a_policy_file_that_cannot_be_parsed_refuses_its_cas_certificates(
        grid_daemon, grid, kind, text, fragment):
    replace(grid_daemon.ca_dir / f"aaaa0002.{kind}", text)
    message = refusal(grid_daemon, grid.files["jane"])
    assert message.startswith(f"CA {GRID_CA} cannot be relied on: its ")
    assert f"aaaa0002.{kind} cannot be read ({fragment}" in message


# --------------------------------------------------------- unambiguous DNs
@pytest.mark.parametrize("label, dn", [
    ("slash in a value", "/DC=org/DC=example/OU=Users\\/CN=Jane Doe"),
    ("multi-valued RDN", "/DC=org/DC=example/OU=Users+CN=Jane Doe"),
])
def test_a_dn_that_only_looks_like_janes_is_not_janes(grid_daemon, grid, label, dn):
    assert refusal(grid_daemon, grid.files[label]) == (
        f"DN {dn} is not registered to any Dynamo user (dynamo-user-auth --user NAME --dn ...)")
    grid_daemon.call("set_user", name="lookalike", dns=[dn])
    assert whoami(grid_daemon, grid.files[label]) == "lookalike"
    assert whoami(grid_daemon, grid.files["jane"]) == "jane"


def test_the_slash_form_is_the_one_openssl_shows(grid, tmp_path):
    """`openssl x509 -nameopt compat` (X509_NAME_oneline) renders every name here as the
    daemon does; only a backslash differs: OpenSSL leaves it, which would be ambiguous."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command")
    names = [SLASH_IN_VALUE, MULTI_VALUED, name(JANE),
             x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a+b, c=d\x01")])]
    for subject in names:
        path = tmp_path / "cert.pem"
        path.write_bytes(pem(issue(subject, ec_key(), None).cert))
        shown = subprocess.run([openssl, "x509", "-in", path, "-noout", "-subject", "-nameopt",
                                "compat"], capture_output=True, text=True, check=True).stdout
        assert shown.strip() == "subject=" + slash_dn(subject)
    backslash = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a\\/CN=b")])
    assert slash_dn(backslash) == "/CN=a\\\\\\/CN=b"


@pytest.mark.parametrize("comma_form, slash_form", [
    ("CN=Jane Doe+OU=Users,DC=example,DC=org", "/DC=org/DC=example/CN=Jane Doe+OU=Users"),
    ("OU=Users/CN=Jane Doe,DC=example,DC=org", "/DC=org/DC=example/OU=Users\\/CN=Jane Doe"),
    ("CN=R\\C3\\A9my \\+ Co\\, Ltd,DC=org", "/DC=org/CN=R\u00e9my \\+ Co, Ltd"),
])
def test_a_comma_form_dn_is_stored_as_the_slash_form_a_certificate_shows(comma_form,
                                                                         slash_form):
    assert normalize_dn(comma_form) == slash_form


# ------------------------------------------------------------- proxy files
def _create_proxy(path: str, data: str) -> int:
    """As uid 65534: create `path` (mode 0600) with `data`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(descriptor, data.encode())
    os.close(descriptor)
    return os.stat(path).st_uid


def test_a_proxy_file_another_account_created_is_not_used(grid_daemon, grid, workdir,
                                                         monkeypatch):
    """uid 65534 creates x509up_u0 in a sticky directory, as it could in /tmp: root's
    clients refuse it, say why and what to do, and go on as the Unix account."""
    os.chmod(workdir, 0o1777)
    proxy = workdir / "x509up_u0"
    data = "".join(Path(grid.files["jane"][f]).read_text() for f in ("cert", "key"))
    assert as_nobody(_create_proxy, str(proxy), data) == 65534
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    script = "import os\nprint(os.environ['USER'])\n"
    shown = grid_daemon.dynamo(input=script)
    assert shown.stdout == "root\n"
    assert (f"warning: proxy {proxy} not used: {proxy} holds a private key but belongs to "
            f"uid 65534 (nobody), not to you (uid 0)") in shown.stderr
    assert "voms-proxy-init --out FILE" in shown.stderr
    assert "; continuing as the Unix account\n" in shown.stderr
    assert "authenticated as jane" not in grid_daemon.log()
    os.chown(proxy, 0, 0)   # the same file, root's own: used
    assert grid_daemon.dynamo(input=script).stdout == "jane\n"


def test_a_proxy_file_others_can_read_is_not_used(grid_daemon, grid, workdir, monkeypatch):
    proxy = workdir / "x509up_u0"
    proxy.write_text("".join(Path(grid.files["jane"][f]).read_text() for f in ("cert", "key")))
    proxy.chmod(0o640)
    monkeypatch.setenv("X509_USER_PROXY", str(proxy))
    created = grid_daemon.inject("--site", "T2_AS_ROOT")
    assert (f"warning: proxy {proxy} not used: {proxy} holds a private key but its mode 0640 "
            f"opens it to group or others; make it yours alone: chmod 600 {proxy}; continuing "
            f"as the Unix account") in created.stderr
    assert "authenticated as jane" not in grid_daemon.log()
    refused = grid_daemon.inject("--site", "T2_NEVER", "--cert", proxy, check=False)
    assert refused.returncode == 1
    assert f"cannot use certificate {proxy}: {proxy} holds a private key" in refused.stderr
    assert [s["name"] for s in grid_daemon.call("list_sites")["sites"]] == ["T2_AS_ROOT"]
