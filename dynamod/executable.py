"""What an application can import: `from dynamod.executable import inventory, Site`.

Filled in the application's child before its script starts; outside an
application `inventory` is None.
"""

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
app_id = None
