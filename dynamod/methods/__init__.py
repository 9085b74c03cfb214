"""Protocol methods, one module per area; importing this package registers them."""

from . import apps, auth, inventory, partitions, server  # noqa: F401  (registration happens on import)
from .registry import METHODS, Method, lookup  # noqa: F401
