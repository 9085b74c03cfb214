"""Users, grants, script authorizations and application records go through the same
undo log as the inventory: a commit that fails leaves each of them as the store has it."""

from support.faults import lock

JANE_DN = "/DC=org/DC=example/OU=Users/CN=Jane Doe"
JOHN_DN = "/DC=org/DC=example/OU=Users/CN=John Roe"
SCRIPT = "print('hello')\n"


def registries(daemon) -> dict:
    """Everything of the registries a superuser can read."""
    return {"jane": daemon.call("get_user", name="jane"),
            "grants": daemon.call("list_grants"),
            "authorizations": daemon.call("list_script_authorizations"),
            "applications": [(a["id"], a["status"]) for a in
                             daemon.call("list_applications", limit=100)["applications"]]}


def test_a_failed_commit_undoes_every_registry_it_touched(daemon):
    daemon.call("set_user", name="jane", email="jane@example.org", dns=[JANE_DN])
    daemon.call("create_role", role="shifter")
    daemon.call("grant_role", user="jane", role="shifter", target="inventory")
    daemon.call("authorize_script", title="kept", checksum="ab" * 32)
    before = registries(daemon)

    # Pipelined on one connection while another process holds the write lock: each is
    # applied in memory (the grant to john builds on his creation), then their commit
    # fails and all are undone, newest first.
    requests = [("set_user", {"name": "john", "email": "john@example.org", "dns": [JOHN_DN],
                              "accounts": ["nobody"]}),
                ("set_user", {"name": "jane", "email": "changed@example.org",
                              "accounts": ["daemon"]}),
                ("create_role", {"role": "archivist"}),
                ("grant_role", {"user": "john", "role": "archivist", "target": "all"}),
                ("revoke_role", {"user": "jane", "role": "shifter"}),
                ("authorize_script", {"title": "new", "checksum": "cd" * 32}),
                ("revoke_script_authorization", {"title": "kept"}),
                ("run_application", {"script": SCRIPT, "path": "hello.py", "attach": False})]
    holder = lock(daemon.database)
    try:
        with daemon.client() as client:
            sent = [client.send(method, params) for method, params in requests]
            answers = {}
            for _ in sent:
                answer = client.receive()
                answers[answer["id"]] = answer.get("error", {}).get("code")
    finally:
        holder.communicate("\n", timeout=30)
    assert [answers[i] for i in sent] == ["store_error"] * len(requests)

    assert registries(daemon) == before
    assert daemon.call("list_grants", user="john")["grants"] == []
    assert "archivist" not in daemon.call("list_grants")["roles"]
    # The DN and the account taken by the failed changes are free again.
    daemon.call("set_user", name="other", dns=[JOHN_DN], accounts=["nobody", "daemon"])

    committed = registries(daemon)
    daemon.restart()
    assert registries(daemon) == committed


def test_a_failed_first_commit_forgets_the_application(daemon):
    """The record of an application whose submission did not commit is not shown and
    never runs; its id is not given to anyone."""
    holder = lock(daemon.database)
    try:
        with daemon.client() as client:
            request = client.send("run_application", {"script": SCRIPT, "path": "hello.py",
                                                       "attach": False})
            answer = client.receive()
    finally:
        holder.communicate("\n", timeout=30)
    assert answer["id"] == request and answer["error"]["code"] == "store_error"
    assert daemon.call("list_applications")["applications"] == []
    ran = daemon.call("run_application", script=SCRIPT, path="hello.py", attach=False)
    assert daemon.call("poll_application", id=ran["id"])["id"] == ran["id"]
    assert [a["id"] for a in daemon.call("list_applications")["applications"]] == [ran["id"]]
