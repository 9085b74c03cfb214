"""The interactive console `dynamo` opens: run as a read-only application.

On a terminal: a banner, readline editing, history in ~/.dynamo_history and
tab completion.  With standard input from a pipe: no prompts, so
`printf 'inventory.sites\n' | dynamo` prints just the answer.  Ctrl-C reaches
`dynamo`, which passes it on as SIGINT (interrupt_application): it drops the
current line or stops the running statement, as in Python's own console.
"""

import code
import os
import signal
import sys

from dynamod.apps.child import print_script_traceback

namespace = globals()
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

    def showtraceback(self):
        _, value, tb = sys.exc_info()
        print_script_traceback(value.with_traceback(tb.tb_next))

    def write(self, data):
        if interactive or data != "\n":   # code.py's new line after Ctrl-D: none from a pipe
            super().write(data)


_sites, _datasets = len(inventory.sites), len(inventory.datasets)  # noqa: F821
print(f"DYNAMO console (application {os.environ.get('DYNAMO_APP_ID')}): `inventory` holds "
      f"{_sites} site{'s' * (_sites != 1)}, {_datasets} dataset{'s' * (_datasets != 1)}; "
      f"read-only, changes are discarded. Ctrl-D to leave.", file=sys.stderr)
try:
    Console(namespace).interact(banner="", exitmsg="")
finally:
    if interactive:
        try:
            readline.write_history_file(history)
        except OSError:
            pass
