"""How an application's child reads files: it asks the daemon.

Files stay in the database (filecache.py), and a child cannot open it: it
runs as its caller, and a database connection must not cross a fork.  So
each child gets one end of a socket pair; its file cache sends one JSON line
per question (`{"block": id}` or `{"lfn": name}`) and the daemon answers from
its own read connection, one line each.  The child sees the files as the
store has them when it asks (its blocks and replicas are those of the fork).

The answers are made in a thread of their own, never on the event loop: a block
of 100,000 files is a query and the JSON of every row, some 90 ms, which a
script asking for it without end would otherwise take from every client.  The
thread is one for all applications and each application has one question in
it at a time, answered in order: one that asks without end waits for its own
answers, and the others' questions come between them.  The daemon's end refuses
descriptors (SO_PASSRIGHTS, descriptors.py): read here, on the event loop, the
kernel would close one there, however long its close waits.
"""

import asyncio
import functools
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

import orjson

from ..errors import DynamoError, StoreError
from ..threadname import name_thread

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


def _reply(line: bytes, reader) -> bytes:
    """The answer's line, as the child reads it."""
    return orjson.dumps(answer(line, reader)) + b"\n"


@functools.cache
def _answering() -> ThreadPoolExecutor:
    """One thread, started with the first question, for every application's."""
    return ThreadPoolExecutor(1, thread_name_prefix="dynamod-files",
                              initializer=name_thread, initargs=("dynamod-files",))


async def serve(sock: socket.socket, reader):
    """Answer the child until it closes its end (or sends something oversized); the
    next question is read once the last answer is written."""
    loop = asyncio.get_running_loop()
    stream, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_QUESTION)
    try:
        while line := await stream.readline():
            writer.write(await loop.run_in_executor(_answering(), _reply, line, reader))
            await writer.drain()
    except (ValueError, ConnectionError) as exc:
        log.warning("file channel of an application closed: %s", exc)
    finally:
        writer.close()


async def close(reader):
    """Close the application's read connection once the thread is done with it (a
    question of it may still be answered there after `serve` was cancelled)."""
    await asyncio.get_running_loop().run_in_executor(_answering(), reader.close)


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
