"""The inventory's classes under the original's name, `dynamo.dataformat`.

`ObjectError` (the original's error for a missing or invalid object) is the
base of every error the inventory raises here (`DynamoError`), so an original
`except ObjectError:` still catches what it meant to.
"""

from dynamod.errors import DynamoError as ObjectError
from dynamod.inventory.objects import (
    Block,
    BlockReplica,
    Dataset,
    DatasetReplica,
    File,
    Group,
    Site,
)

__all__ = ["ObjectError", "Dataset", "Block", "File", "Site", "Group", "DatasetReplica",
           "BlockReplica"]
