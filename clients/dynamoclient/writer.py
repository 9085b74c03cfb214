"""How the clients name the read/write application holding the writer slot."""

import time


def describe_writer(holder: dict) -> str:
    """From a `waiting` event (behind, behind_title, behind_user, since) or the
    `writer` of status and list_applications (app, title, user, since)."""
    app = holder.get("behind", holder.get("app"))
    title = holder.get("behind_title", holder.get("title"))
    user = holder.get("behind_user", holder.get("user"))
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"read/write application {app} ({title!r} of {user}, since {when})"
