"""Identity: X.509 certificates and proxies, mapped Unix accounts, roles and grants.

The PKI (a CA, user certificates, RFC 3820 and legacy Globus proxies, and the
bad ones) is built here with `cryptography`; a real dynamod trusts the CA
through `[auth] ca_path` in its TOML configuration, and the real clients
prove the certificates.  The unprivileged account is uid/gid 65534: a forked
child keeps one connection open as that account (so that a grant can change
under it), and the real clients run as that account in subprocesses.
"""

import base64
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import dynamoclient
from dynamoclient import x509 as client_x509
from dynamoclient.connection import CHALLENGE_PREFIX, Client, RemoteError
from dynamod.auth.x509 import is_proxy, load_trust
from support.nobody import NOBODY
from support.pki import (DAY, JANE, NOW, STRANGER, Credential, ec_key, issue, key_pem, name, pem,
                         proxy_of, rsa_key, write_private)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")

JOHN = "/DC=org/DC=example/OU=Users/CN=John Roe"
JOHN_COMMA_FORMS = ["CN=John Roe,OU=Users,DC=example,DC=org",  # RFC 4514, most specific first
                    "DC = org, DC = example, OU = Users, CN = John Roe"]  # openssl's "oneline"
MARY = "/DC=org/DC=example/OU=Users/CN=Mary Major"
CA_DN = "/DC=org/DC=example/CN=Example Grid CA"
SITE = {"name": "T2_ID_TEST", "host": "se.test.org", "backend": "davs://se.test.org/cms",
        "status": "ready"}
CLIENTS_DIR = str(Path(dynamoclient.__file__).parent.parent)
SUPERUSER_CALLS = [
    ("set_user", {"name": "intruder", "accounts": ["nobody"]}),
    ("get_user", {"name": "jane"}),
    ("create_role", {"role": "boss"}),
    ("grant_role", {"user": "jane", "role": "admin", "target": "all"}),
    ("revoke_role", {"user": "jane", "role": "admin"}),
    ("list_grants", {}),
    ("remove_from_user", {"name": "jane", "dns": [JANE]}),
    ("delete_user", {"name": "jane"}),
    ("authorize_script", {"title": "t", "checksum": "0" * 64}),
    ("list_script_authorizations", {}),
    ("revoke_script_authorization", {"title": "t"}),
]


# ------------------------------------------------------------------- the PKI
class Pki:
    """Every credential the tests use, written as files in `directory`."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca_dir = directory / "ca"
        self.ca_dir.mkdir()
        ca = issue(name(CA_DN), rsa_key(), None, not_after=NOW + 3650 * DAY, ca=True)
        self.ca = ca
        (self.ca_dir / "example-ca.pem").write_bytes(pem(ca.cert))
        rogue = issue(name(CA_DN), rsa_key(), None, not_after=NOW + 3650 * DAY, ca=True)
        jane = issue(name(JANE), rsa_key(), ca)
        rfc = proxy_of(jane, "1234567890", rfc3820=True, key=rsa_key())
        self.files = {}
        self.credentials = {
            "jane": jane,
            "john": issue(name(JOHN), ec_key(), ca),
            "mary": issue(name(MARY), ec_key(), ca),
            "rfc3820 proxy": rfc,
            "legacy proxy": proxy_of(jane, "proxy"),
            "legacy limited proxy": proxy_of(jane, "limited proxy"),
            "legacy numbered proxy": proxy_of(jane, "424242"),
            # A CN no legacy proxy has: only the ProxyCertInfo extension makes it a proxy.
            "proxy of a proxy": proxy_of(rfc, "delegated", rfc3820=True),
            "expired": issue(name(JANE), ec_key(), ca, NOW - 60 * DAY, NOW - DAY),
            "not yet valid": issue(name(JANE), ec_key(), ca, NOW + DAY, NOW + 60 * DAY),
            "untrusted CA": issue(name(JANE), ec_key(), rogue),
            "unknown DN": issue(name(STRANGER), ec_key(), ca),
            "expired proxy": proxy_of(jane, "proxy", not_before=NOW - 2 * DAY,
                                      not_after=NOW - DAY),
        }
        old_jane = self.credentials["expired"]
        self.credentials["proxy of an expired certificate"] = proxy_of(old_jane, "55555",
                                                                       rfc3820=True)
        # Jane's certificate with someone else's key; a proxy "of Jane" that Jane never signed.
        self.credentials["wrong key"] = Credential(jane.cert, ec_key(), jane.issuers)
        forged = issue(name(JANE + "/CN=proxy"), ec_key(), self.credentials["mary"],
                       issuer_name=jane.cert.subject)
        self.credentials["forged proxy"] = Credential(forged.cert, forged.key, [jane.cert])
        self.credentials["proxy without its certificate"] = Credential(rfc.cert, rfc.key)
        for label, credential in self.credentials.items():
            self.files[label] = self._write(label, credential)

    def _write(self, label, credential: Credential) -> Path:
        """A proxy as a grid proxy file: the proxy, its key, then the certificates that
        issued it (the CA aside); a certificate with its key beside it, in `<name>.key`.
        The file with the key is mode 0600, as the clients require."""
        path = self.dir / (label.replace(" ", "-") + ".pem")
        issuers = b"".join(pem(c) for c in credential.issuers if c.subject != name(CA_DN))
        if "proxy" in label:
            write_private(path, pem(credential.cert) + key_pem(credential.key, traditional=True)
                          + issuers)
        else:
            path.write_bytes(pem(credential.cert) + issuers)
            write_private(path.with_suffix(".key"), key_pem(credential.key))
        return path

    def client_args(self, label) -> dict:
        """`cert` (and `key`, when separate) for Client() and the --cert/--key options."""
        path = self.files[label]
        key = path.with_suffix(".key")
        return {"cert": str(path), "key": str(key) if key.exists() else None}

    def options(self, label) -> list:
        args = self.client_args(label)
        return ["--cert", args["cert"], *(["--key", args["key"]] if args["key"] else [])]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def x509_daemon(start_daemon, pki):
    """A dynamod trusting this module's CA, with jane (slash-form DN) an admin."""
    daemon = start_daemon(config={"auth": {"ca_path": str(pki.ca_dir)}})
    user_auth(daemon, "--user", "jane", "--dn", JANE, "--role", "admin")
    return daemon


def user_auth(daemon, *args, **kwargs):
    """`dynamo-user-auth ... --yes` as root."""
    return daemon.client_command("user_auth", *args, "--yes", **kwargs)


# ------------------------------------------------- the unprivileged account
def _nobody_python() -> str | None:
    """An interpreter uid 65534 can run that imports the clients (pytest's may live in
    a home directory only root can enter)."""
    for python in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin")):
        try:
            if python and subprocess.run(
                    [python, "-c", "import dynamoclient.connection"], user=NOBODY, group=NOBODY,
                    extra_groups=[], cwd="/", env={"PYTHONPATH": CLIENTS_DIR},
                    capture_output=True).returncode == 0:
                return python
        except PermissionError:
            continue
    return None


@pytest.fixture(scope="module")
def nobody_python() -> str:
    python = _nobody_python()
    if python is None:
        pytest.skip("no Python interpreter that uid 65534 can run")
    return python


def as_nobody(daemon, python, tool, *args, check=True, cwd="/", **kwargs):
    """Run a real client (`inject`, `dynamo`, `user_auth`, ...) as uid/gid 65534."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": CLIENTS_DIR, "DYNAMO_SOCKET": daemon.socket,
           "HOME": "/"}
    result = subprocess.run([python, "-m", f"dynamoclient.{tool}", *map(str, args)], env=env,
                            user=NOBODY, group=NOBODY, extra_groups=[], cwd=cwd,
                            capture_output=True, text=True, timeout=60, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} {args} as uid {NOBODY} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


class NobodyConnection:
    """One connection held open by a forked child running as uid/gid 65534.

    The test sends it requests through a pipe and reads the answers back, so
    the connection outlives changes the superuser makes meanwhile.
    """

    _parent_ends = set()  # of every open one: a child closes them, or they never see EOF

    def __init__(self, socket_path: str):
        requests_r, self._requests = os.pipe()
        self._answers, answers_w = os.pipe()
        self._parent_ends.update((self._requests, self._answers))
        self.pid = os.fork()
        if self.pid == 0:  # the child: no pytest, no exceptions escaping
            code = 1
            try:
                for fd in self._parent_ends:
                    os.close(fd)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                with Client(socket_path, timeout=10) as client, \
                        os.fdopen(requests_r, "rb") as requests, \
                        os.fdopen(answers_w, "wb", buffering=0) as answers:
                    for line in requests:
                        request = orjson.loads(line)
                        client.send(request["method"], request["params"])
                        answers.write(orjson.dumps(client.receive()) + b"\n")
                code = 0
            finally:
                os._exit(code)
        os.close(requests_r)
        os.close(answers_w)
        self.reader = os.fdopen(self._answers, "rb")

    def request(self, method, **params) -> dict:
        """The raw answer: {"result": ...} or {"error": ...}."""
        os.write(self._requests, orjson.dumps({"method": method, "params": params}) + b"\n")
        line = self.reader.readline()
        assert line, "the unprivileged child died"
        return orjson.loads(line)

    def close(self):
        self._parent_ends.difference_update((self._requests, self._answers))
        os.close(self._requests)
        self.reader.close()
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"


@pytest.fixture
def nobody_connections():
    opened = []

    def connect(daemon) -> NobodyConnection:
        opened.append(NobodyConnection(daemon.socket))
        return opened[-1]

    yield connect
    for connection in opened:
        connection.close()


def refusal(answer: dict, needs: str) -> str:
    """The message of a not_authorized answer, which must say what is missing."""
    assert "error" in answer, f"expected a refusal, got {answer}"
    error = answer["error"]
    assert error["code"] == "not_authorized", error
    assert error["needs"] == needs, error
    return error["message"]


# ------------------------------------------------------------ X.509: accepted
@pytest.mark.parametrize("label", ["jane", "rfc3820 proxy", "legacy proxy",
                                   "legacy limited proxy", "legacy numbered proxy",
                                   "proxy of a proxy"])
def test_a_certificate_or_proxy_acts_as_its_registered_user(x509_daemon, pki, label):
    with Client(x509_daemon.socket, **pki.client_args(label)) as client:
        me = client.call("whoami")
        assert (me["user"], me["dn"], me["uid"]) == ("jane", JANE, 0)
        assert me["superuser"] is False and me["roles"] == [["admin", "all"]]
        assert client.call("list_sites") == {"sites": []}
    assert "authenticated as jane by DN " + JANE in x509_daemon.log()


@pytest.mark.parametrize("label", ["rfc3820 proxy", "legacy proxy"])
def test_the_real_clients_prove_a_proxy_file(x509_daemon, pki, label, monkeypatch):
    counts = x509_daemon.inject_json({"site": [SITE]}, "--cert", pki.files[label])
    assert counts["created"] == {"sites": 1}
    assert [s["name"] for s in x509_daemon.call("list_sites")["sites"]] == ["T2_ID_TEST"]
    monkeypatch.setenv("X509_USER_PROXY", str(pki.files[label]))
    shown = x509_daemon.dynamo(input="import os\nprint(os.environ['USER'])\n")
    assert shown.stdout == "jane\n"


@pytest.mark.parametrize("comma_form", JOHN_COMMA_FORMS)
def test_a_dn_given_in_comma_form_is_stored_in_slash_form(x509_daemon, pki, comma_form):
    added = user_auth(x509_daemon, "--user", "john", "--dn", comma_form).stdout
    assert JOHN in added
    assert x509_daemon.call("get_user", name="john")["dns"] == [JOHN]
    with Client(x509_daemon.socket, **pki.client_args("john")) as client:
        assert client.call("whoami")["user"] == "john"


def test_proxies_are_told_from_end_entity_certificates(pki):
    c = {label: credential.cert for label, credential in pki.credentials.items()}
    jane, rfc = c["jane"], c["rfc3820 proxy"]
    assert is_proxy(rfc, None) and is_proxy(c["proxy of a proxy"], None)  # by its extension
    for label in ("legacy proxy", "legacy limited proxy", "legacy numbered proxy"):
        assert is_proxy(c[label], jane) and not is_proxy(c[label], None), label
    assert not is_proxy(jane, pki.credentials["jane"].issuers[0])
    assert not is_proxy(c["john"], jane)  # same depth: a sibling, not a proxy


def test_a_default_proxy_the_daemon_refuses_leaves_the_unix_identity(x509_daemon, pki,
                                                                    monkeypatch):
    monkeypatch.setenv("X509_USER_PROXY", str(pki.files["expired proxy"]))
    result = x509_daemon.inject("--site", "T2_AS_ROOT")
    assert "not accepted" in result.stderr and "expired on" in result.stderr
    assert "continuing as the Unix account" in result.stderr
    assert [s["name"] for s in x509_daemon.call("list_sites")["sites"]] == ["T2_AS_ROOT"]


@pytest.mark.parametrize("missing", ["gone", "a directory"])
def test_a_proxy_named_by_the_environment_that_is_not_a_file_is_reported(
        x509_daemon, tmp_path, monkeypatch, missing):
    """$X509_USER_PROXY naming nothing usable (an expired proxy removed, a typo) is said,
    not passed over: the user meant to act as the proxy's DN."""
    path = tmp_path / "x509up"
    if missing == "a directory":
        path.mkdir()
    monkeypatch.setenv("X509_USER_PROXY", str(path))
    result = x509_daemon.inject("--site", "T2_AS_ROOT")
    problem = "no such file" if missing == "gone" else "not a regular file"
    assert result.stderr == (f"warning: proxy {path} ($X509_USER_PROXY) not used: {problem}; "
                             f"continuing as the Unix account\n")
    assert [s["name"] for s in x509_daemon.call("list_sites")["sites"]] == ["T2_AS_ROOT"]


def test_root_stays_the_superuser_with_a_grid_proxy_in_its_environment(x509_daemon, pki,
                                                                      monkeypatch):
    monkeypatch.setenv("X509_USER_PROXY", str(pki.files["rfc3820 proxy"]))
    assert "created user bob" in user_auth(x509_daemon, "--user", "bob").stdout
    refused = x509_daemon.client_command("user_auth", "--user", "bob", "--role", "operator",
                                         "--cert", pki.files["rfc3820 proxy"], check=False)
    assert refused.returncode == 1
    assert f"jane (DN {JANE}) is not the superuser" in refused.stderr


def test_a_passphrase_protected_key_is_reported_not_a_traceback(x509_daemon, pki, tmp_path):
    jane = pki.credentials["jane"]
    key = tmp_path / "userkey.pem"
    write_private(key, jane.key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"secret")))
    result = x509_daemon.inject("--site", "T2_NEVER", "--cert", pki.files["jane"], "--key",
                                key, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the private key in {key} is protected by a passphrase" in result.stderr


# ------------------------------------------------------------- X.509: refused
REFUSALS = {
    "expired": "certificate " + JANE + " expired on",
    "not yet valid": "certificate " + JANE + " is not valid before",
    "proxy of an expired certificate": "certificate " + JANE + " expired on",
    "expired proxy": "proxy certificate " + JANE + "/CN=proxy expired on",
    "untrusted CA": JANE + " is not issued by a trusted CA",
    "wrong key": "the signature does not match the key of " + JANE,
    "forged proxy": "proxy " + JANE + "/CN=proxy is not signed by " + JANE,
    "proxy without its certificate": "comes without the certificate that signed it",
    "unknown DN": "DN " + STRANGER + " is not registered to any Dynamo user",
}


@pytest.mark.parametrize("label", REFUSALS)
def test_a_bad_certificate_is_refused_saying_why(x509_daemon, pki, label):
    with pytest.raises(RemoteError) as raised:
        Client(x509_daemon.socket, **pki.client_args(label))
    error = raised.value.details
    assert error["code"] == "not_authorized"
    assert REFUSALS[label] in error["message"]
    assert (error["needs"], error["uid"]) == ("identity", 0)
    result = x509_daemon.inject("--site", "T2_NEVER", *pki.options(label), check=False)
    assert result.returncode == 1 and REFUSALS[label] in result.stderr
    assert x509_daemon.call("list_sites") == {"sites": []}


def test_a_signature_of_another_connections_challenge_is_refused(x509_daemon, pki):
    jane = pki.credentials["jane"]
    chain = pem(jane.cert).decode()
    with Client(x509_daemon.socket) as a, Client(x509_daemon.socket) as b:
        challenge_a = base64.b64decode(a.call("auth_challenge")["challenge"])
        b.call("auth_challenge")
        signature = base64.b64encode(client_x509.sign(jane.key, CHALLENGE_PREFIX + challenge_a))
        with pytest.raises(RemoteError) as raised:
            b.call("authenticate", chain=chain, signature=signature.decode())
        assert "another connection's challenge" in raised.value.message
        assert b.call("whoami")["user"] == "root"
        # A's own challenge is still good for A, once.
        assert a.call("authenticate", chain=chain, signature=signature.decode()) == {
            "user": "jane", "dn": JANE}
        with pytest.raises(RemoteError) as replayed:
            a.call("authenticate", chain=chain, signature=signature.decode())
        assert "ask for a challenge" in replayed.value.message
        assert a.call("whoami")["user"] == "jane"


def _authenticate(daemon, chain: list, key) -> dict:
    """`authenticate` with these certificates (leaf first), signed with `key`: the answer."""
    with Client(daemon.socket) as client:
        challenge = base64.b64decode(client.call("auth_challenge")["challenge"])
        signature = base64.b64encode(client_x509.sign(key, CHALLENGE_PREFIX + challenge))
        client.send("authenticate", {"chain": b"".join(map(pem, chain)).decode(),
                                     "signature": signature.decode()})
        return client.receive()


def test_a_certificate_a_ca_issued_is_no_proxy_of_the_ca_whatever_its_name(x509_daemon, pki):
    """A certificate the CA issued to `<the CA's DN>/CN=12345`, given with the CA's own
    certificate, has the name of a legacy proxy of the CA: it is an end-entity
    certificate, and never acts as the CA's DN (were that DN anyone's)."""
    user_auth(x509_daemon, "--user", "causer", "--dn", CA_DN, "--role", "admin")
    holder = issue(name(CA_DN + "/CN=12345"), ec_key(), pki.ca)
    answer = _authenticate(x509_daemon, [holder.cert, pki.ca.cert], holder.key)
    assert answer["error"]["code"] == "not_authorized", answer
    assert f"DN {CA_DN}/CN=12345 is not registered" in answer["error"]["message"]
    rfc = issue(name(CA_DN + "/CN=777"), ec_key(), pki.ca, proxy_info=True)
    answer = _authenticate(x509_daemon, [rfc.cert, pki.ca.cert], rfc.key)
    assert "is signed by a CA certificate" in answer["error"]["message"], answer


class _PublicOnly:
    """A key whose private half nobody has: what a certificate may be made to hold."""

    def __init__(self, public):
        self.public = public

    def public_key(self):
        return self.public


@pytest.mark.parametrize("exponent, bits, refused", [
    ((1 << 40) + 1, 2048, "an RSA public exponent of 41 bits (at most 32"),
    (65537, 8200, "an RSA key of 8200 bits (at most 8192)")])
def test_a_key_costly_to_verify_is_refused_before_any_signature(x509_daemon, pki, exponent,
                                                                bits, refused):
    """A peer not yet identified chooses the keys its chain holds, and so the cost of
    verifying it (an RSA public exponent of thousands of bits costs as much as a private
    key's operation): such a key is refused as the chain is read."""
    public = rsa.RSAPublicNumbers(exponent, (1 << (bits - 1)) | 1).public_key()
    costly = issue(name(STRANGER), _PublicOnly(public), pki.ca)
    answer = _authenticate(x509_daemon, [costly.cert], ec_key())
    assert answer["error"]["code"] == "not_authorized", answer
    assert refused in answer["error"]["message"]


def test_a_signature_without_a_challenge_is_refused(x509_daemon, pki):
    jane = pki.credentials["jane"]
    signature = base64.b64encode(client_x509.sign(jane.key, CHALLENGE_PREFIX))
    with Client(x509_daemon.socket) as client:
        with pytest.raises(RemoteError) as raised:
            client.call("authenticate", chain=pem(jane.cert).decode(),
                        signature=signature.decode())
    assert "auth_challenge" in raised.value.message


def test_x509_is_not_configured_without_a_ca_path(daemon, pki):
    with pytest.raises(RemoteError) as raised:
        Client(daemon.socket, **pki.client_args("jane"))
    assert raised.value.code == "not_configured" and "ca_path" in raised.value.message


def test_the_ca_path_may_be_a_hashed_directory_or_a_bundle(pki, tmp_path):
    ca = pki.credentials["jane"].issuers[0]
    hashed = tmp_path / "certificates"
    hashed.mkdir()
    (hashed / "1a2b3c4d.0").write_bytes(pem(ca))
    (hashed / "example.pem").symlink_to("1a2b3c4d.0")  # the same CA twice: counted once
    (hashed / "1a2b3c4d.signing_policy").write_text(
        f"access_id_CA X509 '{CA_DN}'\npos_rights globus CA:sign\n"
        f"cond_subjects globus '\"/DC=org/DC=example/*\"'\n")
    (hashed / "1a2b3c4d.info").write_text("alias = example\n")
    trust = load_trust(str(hashed))
    assert trust.cas == [ca] and not trust.unusable
    assert [r.file for r in trust.signing_policies[CA_DN.casefold()]] == [
        str(hashed / "1a2b3c4d.signing_policy")]
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem(ca) + pem(pki.credentials["untrusted CA"].issuers[0]))
    assert len(load_trust(str(bundle))) == 2


# -------------------------------------------------------- X.509: authorization
def test_a_grant_and_its_revocation_count_on_an_open_connection(x509_daemon, pki):
    user_auth(x509_daemon, "--user", "mary", "--dn", MARY)
    with Client(x509_daemon.socket, **pki.client_args("mary")) as mary:
        with pytest.raises(RemoteError) as raised:
            mary.call("inject", data={"site": [SITE]})
        message = raised.value.message
        assert raised.value.details["needs"] == "inventory"
        assert "mary" in message and MARY in message
        assert "admin or operator role on inventory" in message
        user_auth(x509_daemon, "--user", "mary", "--role", "operator", "--target", "inventory")
        assert mary.call("inject", data={"site": [SITE]})["created"] == {"sites": 1}
        x509_daemon.client_command("user_auth", "--user", "mary", "--role", "operator",
                                   "--revoke")
        with pytest.raises(RemoteError) as again:
            mary.call("delete", data={"site": [{"name": SITE["name"]}]})
        assert again.value.details["needs"] == "inventory"
    assert "grant revoked: role operator on inventory from user mary" in x509_daemon.log()


def test_a_dn_moved_to_another_user_counts_on_an_open_connection(x509_daemon, pki):
    """Who a proved DN is counts from the next request, as a grant does: the DN taken
    from jane and given to mary, jane's open connection is mary's."""
    with Client(x509_daemon.socket, **pki.client_args("jane")) as connection:
        assert connection.call("whoami")["user"] == "jane"
        user_auth(x509_daemon, "--user", "jane", "--remove-dn", JANE)
        user_auth(x509_daemon, "--user", "mary", "--dn", JANE)
        assert connection.call("whoami")["user"] == "mary"
        with pytest.raises(RemoteError) as raised:
            connection.call("inject", data={"site": [SITE]})
        assert raised.value.details["needs"] == "inventory"


def test_a_certificate_admin_is_not_the_superuser(x509_daemon, pki):
    with Client(x509_daemon.socket, **pki.client_args("rfc3820 proxy")) as jane:
        for method, params in SUPERUSER_CALLS:
            with pytest.raises(RemoteError) as raised:
                jane.call(method, **params)
            assert raised.value.details["needs"] == "superuser", method
            assert f"{method} refused: jane (DN {JANE})" in raised.value.message
    result = x509_daemon.client_command("user_auth", "--user", "jane", "--role", "operator",
                                        *pki.options("jane"), check=False)
    assert result.returncode == 1 and "superuser" in result.stderr


# ------------------------------------------------------------ Unix accounts
def test_an_account_is_refused_until_mapped_then_reads(daemon, nobody_connections,
                                                       nobody_python):
    before = nobody_connections(daemon)
    message = refusal(before.request("list_sites"), "identity")
    assert "uid 65534 (account nobody) is not mapped" in message
    assert "--account nobody" in message
    refused = as_nobody(daemon, nobody_python, "inject", "--site", "T2_X", check=False)
    assert refused.returncode == 1 and "uid 65534" in refused.stderr

    added = user_auth(daemon, "--user", "guest", "--account", "nobody").stdout
    assert "accounts nobody" in added
    after = nobody_connections(daemon)
    assert after.request("whoami")["result"]["user"] == "guest"
    assert after.request("list_sites")["result"] == {"sites": []}
    message = refusal(after.request("inject", data={"site": [SITE]}), "inventory")
    assert "guest (uid 65534) lacks the admin or operator role on inventory" in message


def test_an_account_injects_only_while_it_holds_operator_on_inventory(daemon,
                                                                     nobody_connections,
                                                                     nobody_python):
    user_auth(daemon, "--user", "guest", "--account", "nobody")
    guest = nobody_connections(daemon)
    user_auth(daemon, "--user", "guest", "--role", "operator", "--target", "application")
    refusal(guest.request("inject", data={"site": [SITE]}), "inventory")
    user_auth(daemon, "--user", "guest", "--role", "operator", "--target", "inventory")
    assert guest.request("inject", data={"site": [SITE]})["result"]["created"] == {"sites": 1}
    assert as_nobody(daemon, nobody_python, "inject", "--site", "T2_BY_CLIENT").returncode == 0

    daemon.client_command("user_auth", "--user", "guest", "--role", "operator", "--target",
                          "inventory", "--revoke")
    message = refusal(guest.request("inject", data={"site": [dict(SITE, name="T2_LATE")]}),
                      "inventory")
    assert "role on inventory" in message
    assert guest.request("list_sites")["result"]["sites"]  # still a reader
    refused = as_nobody(daemon, nobody_python, "inject", "--site", "T2_LATE", check=False)
    assert refused.returncode == 1 and "role on inventory" in refused.stderr
    names = {s["name"] for s in daemon.call("list_sites")["sites"]}
    assert names == {"T2_ID_TEST", "T2_BY_CLIENT"}


def test_an_account_taken_back_or_its_user_deleted_acts_no_more_on_an_open_connection(
        daemon, nobody_connections):
    """An account's mapping counts from the next request: taken from its user, or its
    user deleted and a new one of the same name made an admin, the open connection is
    no one's (it was the old user's for as long as it stayed open)."""
    user_auth(daemon, "--user", "guest", "--account", "nobody", "--role", "operator",
              "--target", "inventory")
    guest = nobody_connections(daemon)
    assert guest.request("whoami")["result"]["user"] == "guest"
    user_auth(daemon, "--user", "guest", "--remove-account", "nobody")
    assert guest.request("whoami")["result"]["user"] is None
    refusal(guest.request("inject", data={"site": [SITE]}), "identity")
    user_auth(daemon, "--user", "temp", "--account", "nobody")
    assert guest.request("whoami")["result"]["user"] == "temp"
    user_auth(daemon, "--user", "temp", "--delete")
    user_auth(daemon, "--user", "temp", "--role", "admin")
    assert guest.request("whoami")["result"]["user"] is None
    refusal(guest.request("inject", data={"site": [SITE]}), "identity")
    assert "connection" in daemon.log() and "is now unidentified peer (uid 65534)" in \
        daemon.log()


def test_an_account_never_reaches_the_superuser_methods(daemon, nobody_connections,
                                                       nobody_python, tmp_path):
    user_auth(daemon, "--user", "guest", "--account", "nobody", "--role", "admin")
    guest = nobody_connections(daemon)
    assert guest.request("whoami")["result"]["roles"] == [["admin", "all"]]
    for method, params in SUPERUSER_CALLS:
        message = refusal(guest.request(method, **params), "superuser")
        assert f"{method} refused: guest (uid 65534) is not the superuser" in message
    for tool, args in (("user_auth", ["--user", "guest", "--role", "operator", "--yes"]),
                       ("user_auth", ["--list"]),
                       ("exec_auth", ["--list"])):
        result = as_nobody(daemon, nobody_python, tool, *args, check=False)
        assert result.returncode == 1 and "superuser" in result.stderr, (tool, result.stderr)
    assert daemon.call("list_grants", user="guest")["grants"] == [
        {"user": "guest", "role": "admin", "target": "all"}]


# ------------------------------------------------------------- applications
APP = """\
import os, sys
print(os.getuid(), os.getgid())
try:
    open(sys.argv[1]).close()
except PermissionError as exc:
    print('PermissionError', exc.filename)
"""


def test_an_application_runs_as_the_submitting_account(daemon, nobody_python):
    work = Path(tempfile.mkdtemp(prefix="dyn-app-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        script = work / "whoami.py"
        script.write_text(APP)
        user_auth(daemon, "--user", "guest", "--account", "nobody")
        command = f"{script} {daemon.database}"
        refused = as_nobody(daemon, nobody_python, "dynamo", command, cwd=work, check=False)
        assert refused.returncode == 1
        assert "lacks the admin or operator role on application" in refused.stderr

        user_auth(daemon, "--user", "guest", "--role", "operator", "--target", "application")
        result = as_nobody(daemon, nobody_python, "dynamo", command, cwd=work)
        assert result.stdout == f"{NOBODY} {NOBODY}\nPermissionError {daemon.database}\n"
        assert os.stat(daemon.database).st_uid == 0
        assert daemon.call("list_applications")["applications"][0]["user"] == "guest"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------- script authorizations
def test_a_script_is_authorized_only_for_a_user_that_exists(daemon, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    refused = daemon.exec_auth("--executable", script, "--title", "t", "--user", "nosuchuser",
                               check=False)
    assert refused.returncode == 1
    assert "unknown user 'nosuchuser'" in refused.stderr and "[not_found]" in refused.stderr
    assert daemon.call("list_script_authorizations") == {"authorizations": []}
    assert "refused authorize_script for title 't': unknown user 'nosuchuser'" in daemon.log()

    user_auth(daemon, "--user", "jane")
    for user in ("jane", "root"):  # a registered user; the superuser, who has no record
        shown = daemon.exec_auth("--executable", script, "--title", "t", "--user", user).stdout
        assert f"as 't' for {user}" in shown
    assert [a["user"] for a in daemon.call("list_script_authorizations")["authorizations"]] == [
        "jane", "root"]


def _maps_the_x509_library(daemon) -> bool:
    return "cryptography" in Path(f"/proc/{daemon.process.pid}/maps").read_text()


def test_the_x509_library_is_loaded_only_where_x509_is_configured(daemon, x509_daemon):
    """A third of a start's imports: a daemon without a CA directory never needs them
    (the test suite alone starts hundreds of daemons)."""
    daemon.call("set_user", name="john", dns=["DC=org, CN=John"])   # DNs need no library
    assert daemon.call("get_user", name="john")["dns"] == ["/DC=org/CN=John"]
    assert not _maps_the_x509_library(daemon)
    assert _maps_the_x509_library(x509_daemon)
