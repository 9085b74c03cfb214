"""What an application can import: `from dynamod.executable import inventory, Site`.

Filled in the application's child before its script starts; outside an
application `inventory` is None.  The original's scripts import the same module
as `dynamo.core.executable`, and the classes from `dynamo.dataformat`.
"""

import sys

from .errors import DynamoError  # noqa: F401  (for `except DynamoError` in scripts)
from .inventory.objects import (  # noqa: F401
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    File,
    Group,
    Site,
)

inventory = None      # the ApplicationInventory of the running application
authorized = False    # True when the application may write (its changes are kept)
authorizer = None     # the original's handle to its authorization server: none here
app_id = None


def __getattr__(name):
    if name == "read_only":  # the original documentation's name for `not authorized`
        return not authorized
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_standard_logger(level: str):
    """The original's helper: the root logger at `level` (a name such as 'info'),
    everything from that level to standard output and errors also to standard error."""
    import logging

    log_level = getattr(logging, level.upper())
    formatter = logging.Formatter("%(asctime)s:%(levelname)s:%(name)s: %(message)s")
    out_handler = logging.StreamHandler(sys.stdout)
    out_handler.setLevel(log_level)
    out_handler.setFormatter(formatter)
    err_handler = logging.StreamHandler(sys.stderr)
    err_handler.setLevel(logging.ERROR)
    err_handler.setFormatter(formatter)
    logger = logging.getLogger()
    logger.setLevel(log_level)
    logger.addHandler(out_handler)
    logger.addHandler(err_handler)
    return logger
