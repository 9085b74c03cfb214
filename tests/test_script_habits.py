"""Policy scripts of the original Dynamo, as their authors wrote them, run through the
real `dynamo` against a real daemon: what a script takes for granted of Python (its
own `__main__`, its end) and of the original's API (`inventory.delete` gives back
what it removed), and what a read-only or read/write run tells its author."""

DATASET = "pandaf/010/DoubleMuon+Run2017F-31Mar2018-v1+MINIAOD"


def test_a_script_is_its_own_main_module(seeded, workdir):
    """`pickle` finds a script's classes in `__main__`, and `import __main__` is the
    script, as with `python script.py` (it was the daemon's entry point)."""
    script = workdir / "summary.py"
    script.write_text(
        "import pickle\n"
        "import __main__\n"
        "class Summary:\n"
        "    def __init__(self, sites): self.sites = sites\n"
        "copy = pickle.loads(pickle.dumps(Summary(sorted(inventory.sites))))\n"
        "print(copy.sites, __main__.Summary is Summary, __main__.__file__)\n")
    result = seeded.dynamo(script)
    assert result.stdout == f"['T2_US_XYZ', 'T3_US_XYZ'] True {script}\n"


def test_a_script_ends_as_a_python_program_does(seeded, workdir):
    """A file written and never closed is flushed, the threads the script started are
    waited for and its atexit handlers run: its last lines are not lost."""
    report = workdir / "report.txt"
    script = workdir / "report.py"
    script.write_text(
        "import atexit, threading, time\n"
        f"out = open({str(report)!r}, 'w')\n"
        "out.write('%d sites\\n' % len(inventory.sites))\n"
        "def late():\n"
        "    time.sleep(0.2)\n"
        "    print('thread done')\n"
        "threading.Thread(target=late).start()\n"
        "atexit.register(print, 'atexit ran')\n")
    result = seeded.dynamo(script)
    assert result.stdout == "thread done\natexit ran\n"
    assert report.read_text() == "2 sites\n"


DELETE = f"""
from dynamo.core.executable import inventory
replica = inventory.datasets[{DATASET!r}].find_replica('T2_US_XYZ')
print('deleted', inventory.delete(replica))
"""


def test_delete_returns_what_it_removed(seeded, workdir):
    """As the original's `inventory.delete`, which scripts logged or counted."""
    script = workdir / "delete.py"
    script.write_text(DELETE)
    result = seeded.dynamo(script)
    assert result.stdout == (f"deleted DatasetReplica T2_US_XYZ:{DATASET} (growing: False, "
                             "0 block_replicas)\n")


def test_a_read_only_script_is_told_its_changes_are_discarded(seeded, workdir):
    """The script forgot --write-request: it ends well, and says that its changes were
    not applied and how to have them applied."""
    script = workdir / "delete.py"
    script.write_text(DELETE)
    result = seeded.dynamo(script)
    assert result.returncode == 0
    assert result.stderr.startswith("application ")
    assert ("is read-only: its 1 change(s) (inventory.update, inventory.delete) are "
            "discarded; to apply them, root authorizes the script (dynamo-exec-auth "
            "--executable delete.py --title TITLE) and it runs with --write-request --title "
            "TITLE\n") in result.stderr
    assert seeded.call("get_dataset", name=DATASET)["replicas"]
    seeded.exec_auth("-x", script, "-t", "delete")
    written = seeded.dynamo(script, "-W", "-t", "delete")
    assert "read-only" not in written.stderr
    clean = workdir / "clean.py"
    clean.write_text("print(len(inventory.sites))\n")
    assert seeded.dynamo(clean).stderr == ""


def test_a_writer_is_told_why_a_module_next_to_it_is_not_found(seeded, workdir):
    """The same script imports its helper read-only, and not read/write (a writer runs
    with python3 -I's sys.path): the error says so instead of a bare ModuleNotFoundError."""
    (workdir / "policy_helper.py").write_text("LIMIT = 5\n")
    script = workdir / "uses_helper.py"
    script.write_text("import policy_helper\nprint(policy_helper.LIMIT)\n")
    assert seeded.dynamo(script).stdout == "5\n"
    seeded.exec_auth("-x", script, "-t", "helper")
    result = seeded.dynamo(script, "-W", "-t", "helper", check=False)
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'policy_helper'" in result.stderr
    assert ("note: a read/write application imports only installed modules"
            in result.stderr)
