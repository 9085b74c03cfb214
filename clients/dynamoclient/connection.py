"""A blocking connection to dynamod: send a request, read its answer.

Standard library only; orjson is used when it is installed.
"""

import itertools
import socket

from .paths import client_socket

try:
    import orjson

    def _dumps(obj) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
except ImportError:  # the light clients work without it
    import json

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    _loads = json.loads


class RemoteError(Exception):
    """An error answer from the daemon: `code` is stable, `message` for people."""

    def __init__(self, error: dict):
        self.code = error.get("code", "error")
        self.message = error.get("message", "")
        self.details = error
        super().__init__(f"{self.message} [{self.code}]")


class ConnectionFailed(Exception):
    pass


class Client:
    def __init__(self, path: str | None = None, timeout: float | None = None):
        self.path = client_socket(path)
        self._ids = itertools.count(1)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise ConnectionFailed(
                f"cannot connect to dynamod at {self.path}: {exc.strerror or exc} "
                f"(is the daemon running? set --socket or $DYNAMO_SOCKET)") from None
        self._reader = self.sock.makefile("rb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._reader.close()
        self.sock.close()

    def send(self, method: str, params: dict | None = None) -> int:
        """Send a request without waiting (pipelining); returns its id."""
        rid = next(self._ids)
        message = {"id": rid, "method": method}
        if params:
            message["params"] = params
        self.sock.sendall(_dumps(message) + b"\n")
        return rid

    def receive(self) -> dict:
        """The next answer, as the raw dict."""
        line = self._reader.readline()
        if not line:
            raise ConnectionFailed("dynamod closed the connection")
        return _loads(line)

    def call(self, method: str, _progress=None, **params):
        """Send one request and return its result (or raise RemoteError).

        `_progress(sent_bytes, total_bytes)` is called as a large request goes out.
        """
        rid = next(self._ids)
        payload = _dumps({"id": rid, "method": method, "params": params}) + b"\n"
        step = 1 << 20
        try:
            for offset in range(0, len(payload), step):
                self.sock.sendall(payload[offset:offset + step])
                if _progress is not None:
                    _progress(min(offset + step, len(payload)), len(payload))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused the request before its end; its answer says why
        answer = self.receive()
        if answer.get("id") not in (rid, None):
            raise ConnectionFailed(f"answer for request {answer.get('id')!r}, expected {rid}")
        if "error" in answer:
            raise RemoteError(answer["error"])
        return answer["result"]
