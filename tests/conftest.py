"""The fixtures, and the suite's settings: hypothesis profiles and the random seed.

Every integration test starts its own daemon in a temporary directory and talks
to it through the real clients; nothing is mocked.  What the tests share besides
fixtures is in support/ (test modules never import one another).
"""

import compileall
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from support import pki
from support.daemon import EXAMPLES, Daemon, fresh_directory, write_config
from support.faults import Rig
from support.randomness import SEED, SEED_VARIABLE

# CI=true (.ci/run): the same examples on every run, and a failure prints the blob that
# replays it (@reproduce_failure).  Elsewhere each run draws new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Hypothesis draws from the suite's seed too (unless --hypothesis-seed names another;
    the ci profile's derandomize comes first); the project is byte-compiled."""
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = SEED
    # The suite starts hundreds of daemons and clients: each would compile every module
    # of the project again where the environment says not to write bytecode
    # (PYTHONDONTWRITEBYTECODE; 75 ms of a daemon's 210 ms start here).
    root = Path(__file__).resolve().parent.parent
    for package in ("dynamod", "clients"):
        compileall.compile_dir(root / package, quiet=1)


def pytest_report_header(config):
    return f"random seed: {SEED_VARIABLE}={SEED}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test says how to run it again with the same random draws."""
    report = (yield).get_result()
    if report.failed:
        report.sections.append(("random seed", f"rerun with {SEED_VARIABLE}={SEED}"))


@pytest.fixture
def random_seed() -> int:
    """The suite's random seed (support/randomness.py), for a test's `random.Random`."""
    return SEED


@pytest.fixture
def daemon():
    """A running dynamod in a fresh temporary directory (short path: sockets need one)."""
    root = fresh_directory()
    instance = Daemon.in_directory(root)
    instance.start()
    yield instance
    instance.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_daemon():
    """start_daemon(*options, config=None): a started dynamod with these command-line
    options and, given {table: {key: value}}, this TOML configuration (`--config`, in
    its directory); each is stopped after the test."""
    started = []

    def start(*options, config: dict | None = None) -> Daemon:
        root = fresh_directory()
        if config is not None:
            write_config(root / "dynamod.toml", config)
            options = (*options, "--config", str(root / "dynamod.toml"))
        instance = Daemon.in_directory(root, *options)
        started.append((instance, root))
        return instance.start()

    yield start
    for instance, root in started:
        instance.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def x509_daemon(start_daemon, tmp_path):
    """A dynamod trusting a CA of its own; jane (pki.JANE) is an admin.  Its
    `credentials`: DN -> (certificate, key) as PEM, for pki.JANE and pki.STRANGER (not
    registered)."""
    ca = pki.issue(pki.name("/DC=org/DC=example/CN=Test CA"), pki.ec_key(), None, ca=True)
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca.pem").write_bytes(pki.pem(ca.cert))
    daemon = start_daemon(config={"auth": {"ca_path": str(tmp_path / "ca")}})
    daemon.call("set_user", name="jane", dns=[pki.JANE])
    daemon.call("grant_role", user="jane", role="admin", target="all")
    daemon.credentials = {}
    for dn in (pki.JANE, pki.STRANGER):
        user = pki.issue(pki.name(dn), pki.ec_key(), ca)
        daemon.credentials[dn] = (pki.pem(user.cert).decode(), pki.key_pem(user.key))
    return daemon


@pytest.fixture
def workdir():
    """A fresh directory under /tmp that every account can reach (pytest's own
    temporary tree is root's alone, and socket paths must stay short)."""
    root = fresh_directory("dyo-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def rig():
    """Mounts, loop devices and a daemon on them (support/faults.py), undone at the end."""
    root = fresh_directory("dyn-fault-")
    rig = Rig(root)
    yield rig
    rig.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def seeded(daemon):
    """A daemon holding the walk-through's sites and data (examples/)."""
    daemon.inject(EXAMPLES / "mydynamo-storage-sites.json")
    daemon.inject(EXAMPLES / "mydynamo-data.json")
    return daemon


@pytest.fixture
def seed_sites() -> dict:
    return json.loads((EXAMPLES / "mydynamo-storage-sites.json").read_text())


@pytest.fixture
def seed_data() -> dict:
    return json.loads((EXAMPLES / "mydynamo-data.json").read_text())
