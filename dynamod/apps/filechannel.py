"""How an application's child reads files: it asks the daemon.

Files stay in the database (filecache.py), and a child cannot open it: it
runs as its caller, and a database connection must not cross a fork.  So
each child gets one end of a socket pair; its file cache sends one JSON line
per question (`{"block": id}` or `{"lfn": name}`) and the daemon answers from
its own read connection, one line each.  The child sees the files as the
store has them when it asks (its blocks and replicas are those of the fork).
"""

import asyncio
import logging
import socket

import orjson

from ..errors import DynamoError, StoreError

log = logging.getLogger("dynamod.apps")

MAX_QUESTION = 64 * 1024   # an LFN is at most 4096 characters


def answer(line: bytes, reader) -> dict:
    """The answer to one question; anything malformed gets an error, never a crash."""
    try:
        question = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"error": "not JSON"}
    try:
        if isinstance(question, dict) and type(question.get("block")) is int:
            return {"files": reader.files(question["block"])}
        if isinstance(question, dict) and isinstance(question.get("lfn"), str):
            return {"block": reader.block_of(question["lfn"])}
    except DynamoError as exc:
        return {"error": exc.message}
    return {"error": 'expected {"block": id} or {"lfn": name}'}


async def serve(sock: socket.socket, reader):
    """Answer the child until it closes its end (or sends something oversized)."""
    stream, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_QUESTION)
    try:
        while line := await stream.readline():
            writer.write(orjson.dumps(answer(line, reader)) + b"\n")
            await writer.drain()
    except (ValueError, ConnectionError) as exc:
        log.warning("file channel of an application closed: %s", exc)
    finally:
        writer.close()


class ChannelSource:
    """The child's side: the file cache's source, one blocking question at a time."""

    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)
        self.answers = self.sock.makefile("rb")

    def files(self, block_id: int) -> list[tuple]:
        return [tuple(row) for row in self._ask({"block": block_id})["files"]]

    def block_of(self, lfn: str) -> tuple | None:
        found = self._ask({"lfn": lfn})["block"]
        return tuple(found) if found else None

    def existing(self, lfns: list) -> list:
        return [lfn for lfn in lfns if self.block_of(lfn) is not None]

    def _ask(self, question: dict) -> dict:
        try:
            self.sock.sendall(orjson.dumps(question) + b"\n")
            line = self.answers.readline()
        except OSError as exc:
            raise StoreError(f"cannot ask the daemon for files: {exc}") from exc
        if not line:
            raise StoreError("cannot ask the daemon for files: it closed the channel")
        reply = orjson.loads(line)
        if "error" in reply:
            raise StoreError(f"the daemon could not read files: {reply['error']}")
        return reply
