"""`dynamo.core.executable` is `dynamod.executable` itself (one module object), so
`from dynamo.core.executable import inventory` sees what the application's child
set there."""

import sys

from dynamod import executable

sys.modules[__name__ + ".executable"] = executable
