"""The clients' argument parser: argparse's, with its errors said in one line.

A module of its own so that `dynamo` imports argparse only when its command
line needs it (see dynamo.parse_args).
"""

import argparse


class Parser(argparse.ArgumentParser):
    """A wrong argument is refused as the clients refuse what they check themselves,
    `PROG: what is wrong` and exit code 2, not under argparse's whole usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")
