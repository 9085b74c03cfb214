"""SQLite URIs for the read-only connections, built from any path.

In a URI SQLite ends the path at `?` (the parameters) or `#`, and decodes
`%HH`; a relative path would be resolved against the current directory.
So the path is made absolute and percent-encoded (its bytes, so names that
are not UTF-8 survive too), `/` alone left as it is.
"""

import os
from urllib.parse import quote


def read_only(path: str) -> str:
    return f"file:{quote(os.fsencode(os.path.abspath(path)), safe='/')}?mode=ro"
