"""A blocking connection to dynamod: send a request, read its answer.

Standard library only; orjson is used when it is installed (unless the client
asks for the light codec, see `_codec`).  Everything a plain Unix-account
request does not need is imported when it is used: `dynamo` starts a
process per run, and its start-up is part of every application's start.  So
the socket is the interpreter's own `_socket` (the `socket` module imports
`enum`, `selectors` and more, about 5 ms), read a line at a time here.
"""

import _socket
import _thread   # built in, as _socket: a lock for `call` from several threads
import errno   # built in: nothing to import from disk
import itertools
import sys

from .paths import client_socket, default_proxy, file_problem

CHALLENGE_PREFIX = b"dynamo-x509-challenge:"


def _codec(fast: bool):
    """(dumps, loads) for the wire: orjson when `fast` and installed, else the json module;
    without `fast`, lightjson.

    orjson pays off on big documents (dynamo-inject), but importing it pulls in
    dataclasses, uuid and datetime (~9 ms), and the json module imports `re` (~5 ms); a
    command that exchanges a few small messages starts sooner with lightjson."""
    if not fast:
        from . import lightjson
        return lightjson.dumps, lightjson.loads
    try:
        import orjson
        return orjson.dumps, orjson.loads
    except ImportError:  # the light clients work without it
        pass
    import json

    def dumps(obj) -> bytes:
        try:
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or an infinity: write null, as orjson does
            text = json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False)
        return text.encode()

    return dumps, json.loads


def _finite(obj):
    """`obj` with NaN and infinities replaced by None (what orjson writes for them)."""
    from math import isfinite

    if isinstance(obj, float):
        return obj if isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class RemoteError(Exception):
    """An error answer from the daemon: `code` is stable, `message` for people."""

    def __init__(self, error: dict):
        self.code = error.get("code", "error")
        self.message = error.get("message", "")
        self.details = error
        super().__init__(f"{self.message} [{self.code}]")


class ConnectionFailed(Exception):
    pass


def _hint(code: int | None) -> str:
    """What to check when the socket cannot be reached, by why."""
    if code in (errno.ENOENT, errno.ECONNREFUSED):
        return " (is the daemon running? set --socket or $DYNAMO_SOCKET)"
    if code in (errno.EACCES, errno.EPERM):
        return (" (this account may not reach it: check the permissions of the socket "
                "and of its directories)")
    return ""


def add_arguments(parser):
    """The options every client has: where the daemon is, and which certificate to use."""
    parser.add_argument("--socket", help="daemon socket (default: $DYNAMO_SOCKET, then the "
                                         "per-user state directory, then /run/dynamo)")
    parser.add_argument("-c", "--cert", metavar="FILE",
                        help="X.509 certificate or proxy (default: $X509_USER_PROXY, then "
                             "/tmp/x509up_u<uid> when present; else the Unix account)")
    parser.add_argument("-k", "--key", metavar="FILE", help="its private key (default: in --cert)")


def parse_arguments(parser, argv=None):
    """The command line's options; None, the help printed, when there are none (a tool
    that only acts on what it is told explains itself when run bare)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return None
    return parser.parse_args(argv)


def interruptible(prog: str, note: str = ""):
    """Decorate a command's `main`: Ctrl-C ends it with one line (`note` says what the
    interruption left) and exit code 130, 128 + SIGINT as shells give, not a traceback;
    a standard output closed early (`| head`) ends it quietly, 141 (128 + SIGPIPE)."""
    def decorate(main):
        def run(argv=None):
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted{note}", file=sys.stderr)
                return 130
            except BrokenPipeError:
                output_closed()
                return 141
        run.__doc__ = main.__doc__
        return run
    return decorate


def output_closed():
    """Standard output's reader went away: what is still buffered for it goes nowhere
    (else Python's flush at exit says so with a traceback)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class Client:
    """A connection; identified by its Unix account, or by a certificate it proves."""

    @classmethod
    def from_args(cls, args, **kwargs) -> "Client":
        if args.key and not args.cert:   # it would be ignored: say so rather than go on
            raise ConnectionFailed(f"--key {args.key} needs --cert FILE, the certificate "
                                   f"it belongs to")
        return cls(args.socket, cert=args.cert, key=args.key, **kwargs)

    def __init__(self, path: str | None = None, timeout: float | None = None,
                 cert: str | None = None, key: str | None = None, use_proxy: bool = False,
                 fast_json: bool = True):
        """`cert`/`key` must prove themselves; with `use_proxy`, a default proxy file is
        tried and, if the daemon does not take it, the Unix identity is kept.
        `fast_json=False` keeps to lightjson (see `_codec`)."""
        self._dumps, self._loads = _codec(fast_json)
        self.path = client_socket(path)
        self._ids = itertools.count(1)
        self._calling = _thread.allocate_lock()
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except OSError as exc:
            self.sock.close()
            raise ConnectionFailed(f"cannot connect to dynamod at {self.path}: "
                                   f"{exc.strerror or exc}{_hint(exc.errno)}") from None
        self._buffer = bytearray()   # received, not yet read as lines
        if cert:
            self._prove(cert, key)
        elif use_proxy:
            self._prove_default_proxy()

    def _prove(self, cert: str, key: str | None):
        """The certificate the caller named: proven, or the connection fails."""
        from . import x509

        try:
            chain, private_key = x509.load(cert, key)
        except ValueError as exc:
            self.close()
            raise ConnectionFailed(str(exc) if isinstance(exc, x509.Unreadable)
                                   else f"cannot use certificate {cert}: {exc}") from None
        try:
            self._authenticate(chain, private_key)
        except RemoteError:
            self.close()  # the caller never gets the object to close it
            raise

    def _prove_default_proxy(self):
        """The user's proxy by convention, if there is one: proven when it is usable and
        the daemon accepts it; otherwise the client says why and stays the Unix account."""
        proxy = default_proxy()
        if proxy is None:
            return
        problem = file_problem(proxy)
        if problem:   # only $X509_USER_PROXY names one such
            print(f"warning: proxy {proxy} ($X509_USER_PROXY) not used: {problem}; continuing "
                  f"as the Unix account", file=sys.stderr)
            return
        from . import x509

        try:
            chain, private_key = x509.load(proxy)
        except ValueError as exc:
            print(f"warning: proxy {proxy} not used: {exc}; continuing as the Unix account",
                  file=sys.stderr)
            return
        try:
            self._authenticate(chain, private_key)
        except RemoteError as exc:
            if exc.code != "not_configured":
                print(f"warning: proxy {proxy} not accepted ({exc.message}); continuing as "
                      f"the Unix account", file=sys.stderr)

    def _authenticate(self, chain: str, private_key):
        """Sign the daemon's challenge with the certificate's key (proof of possession)."""
        import base64

        from . import x509

        challenge = base64.b64decode(self.call("auth_challenge")["challenge"])
        signature = x509.sign(private_key, CHALLENGE_PREFIX + challenge)
        self.call("authenticate", chain=chain, signature=base64.b64encode(signature).decode())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, method: str, params: dict | None = None) -> int:
        """Send a request without waiting (pipelining); returns its id."""
        rid = next(self._ids)
        message = {"id": rid, "method": method}
        if params:
            message["params"] = params
        try:
            self.sock.sendall(self._dumps(message) + b"\n")
        except (BrokenPipeError, ConnectionResetError):   # the daemon stopped or refused
            raise ConnectionFailed("dynamod closed the connection") from None
        return rid

    def send_fds(self, fds: list[int]):
        """Pass descriptors to the daemon (SCM_RIGHTS) with one byte, as `socket.send_fds`
        does."""
        data = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
        self.sock.sendmsg([b"F"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, data)])

    def receive(self) -> dict:
        """The next answer, as the raw dict."""
        return self._loads(self._line())

    def wait(self):
        """Until an answer can be read at once (a whole line is here, or bytes or the end
        wait at the socket), reading nothing: a Ctrl-C that interrupts it loses nothing."""
        if b"\n" not in self._buffer:
            self.sock.recv(1, _socket.MSG_PEEK)

    def _line(self) -> bytes:
        buffer, searched = self._buffer, 0
        while True:
            end = buffer.find(b"\n", searched)
            if end >= 0:
                line = bytes(buffer[:end + 1])
                del buffer[:end + 1]
                return line
            searched = len(buffer)
            try:
                chunk = self.sock.recv(1 << 16)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ConnectionFailed("dynamod closed the connection")
            buffer += chunk

    def call(self, method: str, _progress=None, _on_event=None, **params):
        """Send one request and return its result (or raise RemoteError).

        `_progress(sent_bytes, total_bytes)` is called as a large request goes out;
        `_on_event(event)` for each event the daemon sends before the answer.
        Threads may share a client: their calls take turns on the connection (each
        reads its own answer; without the turn one thread read another's answer).
        """
        with self._calling:
            return self._call(method, _progress, _on_event, params)

    @staticmethod
    def _abandoned(answer: dict, rid: int) -> bool:
        """An answer (or event) to an earlier call that gave up waiting (a time-out, a
        Ctrl-C): nobody's, so skipped; kept, it answered every later call, one behind."""
        earlier = answer.get("id")
        return type(earlier) is int and earlier < rid

    def _call(self, method: str, _progress, _on_event, params: dict):
        rid = next(self._ids)
        payload = self._dumps({"id": rid, "method": method, "params": params}) + b"\n"
        step = 1 << 20
        try:
            for offset in range(0, len(payload), step):
                self.sock.sendall(payload[offset:offset + step])
                if _progress is not None:
                    _progress(min(offset + step, len(payload)), len(payload))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon refused the request before its end; its answer says why
        answer = self.receive()
        while "event" in answer and answer.get("id") == rid or self._abandoned(answer, rid):
            if _on_event is not None and answer.get("id") == rid:
                _on_event(answer["event"])
            answer = self.receive()
        if answer.get("id") not in (rid, None):
            raise ConnectionFailed(f"answer for request {answer.get('id')!r}, expected {rid}")
        if "error" in answer:
            raise RemoteError(answer["error"])
        return answer["result"]
