"""The interactive console `dynamo` opens: run as a read-only application.

On a terminal: a banner, readline editing, history in ~/.dynamo_history and
tab completion.  With standard input from a pipe: no prompts, so
`printf 'inventory.sites\n' | dynamo` prints just the answer.
"""

import code
import os
import sys

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

counts = f"{len(inventory.sites)} sites, {len(inventory.datasets)} datasets"  # noqa: F821
print(f"DYNAMO console (application {os.environ.get('DYNAMO_APP_ID')}): `inventory` holds "
      f"{counts}; read-only, changes are discarded. Ctrl-D to leave.", file=sys.stderr)
try:
    code.InteractiveConsole(namespace).interact(banner="", exitmsg="")
finally:
    if interactive:
        try:
            readline.write_history_file(history)
        except OSError:
            pass
