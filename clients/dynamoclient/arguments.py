"""The clients' argument parser: argparse's, with its errors said in one line.

A module of its own so that `dynamo` imports argparse only when its command
line needs it (see dynamo.parse_args).
"""

import argparse


class ExamplesFormatter(argparse.HelpFormatter):
    """argparse's help, but a line of the description or epilog indented by two
    spaces (an example command) is kept as written, not wrapped into the prose."""

    def _fill_text(self, text, width, indent):
        return "\n".join(indent + line if line.startswith("  ") or not line
                         else super(ExamplesFormatter, self)._fill_text(line, width, indent)
                         for line in text.split("\n"))


class Parser(argparse.ArgumentParser):
    """A wrong argument is refused as the clients refuse what they check themselves,
    `PROG: what is wrong` and exit code 2, not under argparse's whole usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", ExamplesFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")
