"""The query limit: a bare uvloop + orjson line server on a Unix socket.

It does what any line-JSON server must do and nothing else: split lines,
decode each request, encode an answer carrying its id (the params echoed as
the result), write.  Same event loop, same JSON library and the same clients
as dynamod, so the ratio of the two isolates the daemon's own work.

    python -m bench.echo SOCKET      # prints "ready" once listening
"""

import asyncio
import os
import signal
import sys

import orjson
import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        *lines, self.pending = (self.pending + data).split(b"\n")
        if not lines:
            return
        out = []
        for line in lines:
            request = orjson.loads(line)
            out.append(orjson.dumps({"id": request.get("id"), "result": request.get("params")}))
        out.append(b"")
        self.transport.write(b"\n".join(out))


async def serve(path: str):
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(Echo, path)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    os.unlink(path)


def main() -> int:
    uvloop.run(serve(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
