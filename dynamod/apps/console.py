"""The interactive console `dynamo` opens: run as a read-only application.

On a terminal: a banner, readline editing, history in ~/.dynamo_history and
tab completion.  With standard input from a pipe: no prompts, so
`printf 'inventory.sites\n' | dynamo` prints just the answer.  Ctrl-C reaches
`dynamo`, which passes it on as SIGINT (interrupt_application): it drops the
current line or stops the running statement, as in Python's own console.

It runs in the application's namespace; its own names stay in `_console`, which
removes itself, so `dir()` and tab completion show the inventory and its classes
alone.  The first `inventory.update` or `delete` says, once, that it is discarded.
"""


def _console(namespace: dict):
    import code
    import os
    import signal
    import sys

    from dynamod.apps.child import print_script_traceback

    del namespace["_console"]
    namespace["__doc__"] = None
    proxy = namespace["inventory"]   # the user may rebind the name
    interactive = sys.stdin.isatty()
    history = os.path.join(os.path.expanduser("~"), ".dynamo_history")
    if interactive:
        import readline
        import rlcompleter

        try:
            readline.read_history_file(history)
        except OSError:
            pass
        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind("tab: complete")
    else:
        sys.ps1 = sys.ps2 = ""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # applications start with SIG_DFL

    class Console(code.InteractiveConsole):
        """Tracebacks without the daemon's frames (nor code.py's), as for scripts."""

        noted = False

        def runcode(self, statement):
            super().runcode(statement)
            if not self.noted and len(proxy.records):
                self.noted = True
                print("note: the console is read-only: inventory.update and inventory.delete "
                      "change this session's copy only, and are discarded when it ends (a "
                      "script run with --write-request applies them)", file=sys.stderr)

        def showtraceback(self):
            _, value, tb = sys.exc_info()
            print_script_traceback(value.with_traceback(tb.tb_next))

        def write(self, data):
            if interactive or data != "\n":   # code.py's new line after Ctrl-D: none from a pipe
                super().write(data)

    sites, datasets = len(proxy.sites), len(proxy.datasets)
    print(f"DYNAMO console (application {os.environ.get('DYNAMO_APP_ID')}): `inventory` holds "
          f"{sites} site{'s' * (sites != 1)}, {datasets} dataset{'s' * (datasets != 1)}; "
          f"read-only, changes are discarded. Ctrl-D to leave.", file=sys.stderr)
    try:
        Console(namespace).interact(banner="", exitmsg="")
    finally:
        if interactive:
            try:
                readline.write_history_file(history)
            except OSError:
                pass


_console(globals())
