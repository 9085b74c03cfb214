"""The protocol at the byte level: send anything, read the answers line by line."""

import socket

import orjson


class Raw:
    """A client with byte-level control: send anything, read answers line by line."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def request(self, rid, method, **params) -> dict:
        self.send(orjson.dumps({"id": rid, "method": method, "params": params}) + b"\n")
        return self.receive()

    def receive(self) -> dict:
        line = self.reader.readline()
        assert line.endswith(b"\n"), f"connection closed (got {line!r})"
        return orjson.loads(line)

    def rest(self) -> list[dict]:
        """Every answer until the daemon closes the connection."""
        answers = []
        while True:
            try:
                line = self.reader.readline()
            except ConnectionResetError:  # closed with our unread bytes in its buffer
                return answers
            if not line:
                return answers
            answers.append(orjson.loads(line))

    def ping_works(self, rid="p") -> bool:
        return self.request(rid, "ping") == {"id": rid, "result": {"pong": True}}


def requests(socket_path: str, lines: list) -> list:
    """Send requests ({"method", "params"}) one by one on one connection; the answers."""
    client = Raw(socket_path)
    try:
        return [client.request(i, r["method"], **r.get("params", {}))
                for i, r in enumerate(lines)]
    finally:
        client.close()


def pipelined(socket_path: str, *documents) -> list:
    """Inject the documents as requests sent at once on one connection; their answers in
    request order."""
    client = Raw(socket_path, timeout=60)
    try:
        client.send(b"".join(orjson.dumps({"id": i, "method": "inject",
                                           "params": {"data": document}}) + b"\n"
                             for i, document in enumerate(documents)))
        answers = [client.receive() for _ in documents]
    finally:
        client.close()
    return sorted(answers, key=lambda answer: answer["id"])
