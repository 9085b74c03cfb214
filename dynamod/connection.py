"""One client connection: framing, dispatch, back-pressure.

Requests are handled as they arrive (a client may pipeline); answers carry
the request id and may come out of order when a request waits for a commit.
The connection stops reading while the client is not reading its answers
(the transport's write buffer is full) or while too many of its requests are
in flight, so no client can make the daemon buffer without bound.  It ends
(at the client's end of input, or after a line over the limit) only once
every request read before has its answer.
"""

import asyncio
import logging
import os
import socket
from collections import deque

from . import collector
from .auth.identity import Peer
from .auth.policy import authorize
from .errors import DynamoError, InvalidRequest, ParseError
from .methods import lookup
from .methods.registry import Call
from .protocol import (LineBuffer, LineNotRead, LineTooLong, decode_request, encode_error,
                       encode_event, encode_result)

FD_TIMEOUT = 30.0  # seconds a client has to pass its descriptors once asked
LARGE_REQUEST = 1 << 20  # handled with the collector paused (collector.py)
WRITE_BATCH = 64 * 1024  # answers written together at most (the transport's high-water mark)

log = logging.getLogger("dynamod.connection")


class Connection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.config = server.config
        self.lines = LineBuffer(self.config.max_line_bytes)
        self.backlog = deque()
        self.tasks = set()
        self.transport = None
        self.identity = None
        self.write_paused = False
        self.reading_paused = False
        self.receiving_fds = False  # reading is paused for descriptors (SCM_RIGHTS)
        self.challenge = None       # the X.509 challenge issued on this connection
        self.ending = False      # no more requests will be read
        self.farewell = None     # the error to send last, before closing
        self.closed = False

    # ------------------------------------------------------ transport events
    def connection_made(self, transport):
        self.transport = transport
        peer = Peer.of(transport.get_extra_info("socket"))
        self.identity = self.server.authenticator.identify(peer)
        if not self.server.admit(self):
            return
        log.debug("connection from %s", self.identity.describe())

    def data_received(self, data):
        try:
            self.backlog.extend(self.lines.feed(data))
        except (LineTooLong, LineNotRead) as exc:  # the connection ends after the lines before
            log.warning("closing connection of %s: %s", self.identity.describe(), exc.message)
            self.backlog.extend(exc.lines)
            self.ending, self.farewell = True, exc
        self._drain_backlog()

    def eof_received(self):
        """The client sent all it will (it may still read): answer, then close."""
        if self.lines.pending:
            self.farewell = ParseError(f"the input ended inside a request "
                                       f"({self.lines.pending} bytes and no newline)")
        self.ending = True
        self._drain_backlog()
        return True

    def pause_writing(self):
        self.write_paused = True
        self._update_reading()

    def resume_writing(self):
        self.write_paused = False
        self._drain_backlog()

    def connection_lost(self, exc):
        self.closed = True
        self.backlog.clear()
        self.server.forget(self)

    # ------------------------------------------------------------ dispatch
    def _busy(self) -> bool:
        return (self.write_paused or self.receiving_fds
                or len(self.tasks) >= self.config.max_requests_in_flight)

    def _drain_backlog(self):
        """Answer the lines read while nothing holds the connection back.  The answers of
        one pass go out together (one system call for a pipelined burst), a batch at a
        time, so that the high-water mark of a client that does not read still stops
        the pass."""
        batch, size = [], 0
        while self.backlog and not self._busy() and not self.closed:
            answer = self._dispatch(self.backlog.popleft())
            if answer is not None:
                batch.append(answer)
                size += len(answer)
                if size >= WRITE_BATCH:
                    self.send(*batch)
                    batch, size = [], 0
        if batch:
            self.send(*batch)
        if self.ending and not self.backlog and not self.tasks:
            if self.farewell is not None:
                self.send(encode_error(None, self.farewell))
            self.transport.close()
        self._update_reading()

    def _update_reading(self):
        want_pause = self._busy() or bool(self.backlog) or self.ending
        if want_pause == self.reading_paused or self.closed or self.transport.is_closing():
            return
        self.reading_paused = want_pause
        if want_pause:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _dispatch(self, line: bytes) -> bytes | None:
        """The answer to one line, or None when its task was started (it answers later);
        encoding is inside the try so that a result JSON cannot hold (an integer over
        64 bits) still gets an answer."""
        rid, large = None, len(line) >= LARGE_REQUEST
        if large:
            collector.hold()  # released with the answer (collector.py)
        try:
            request = decode_request(line)
            rid = request.id
            method = lookup(request.method)
            authorize(self.identity, method.access, method.name, self.server.users)
            params = method.bind(request.params)
            call = Call(self.server, self.identity, rid, self)
            if method.is_async:
                task = asyncio.get_running_loop().create_task(
                    self._run(method, call, params, large))
                self.tasks.add(task)
                large = False  # the task releases its hold
                return None
            return encode_result(rid, method.handler(call, **params))
        except DynamoError as exc:
            return encode_error(exc.details.get("id", rid), exc)
        except Exception:
            log.exception("internal error in request %r", rid)
            return encode_error(rid, DynamoError("internal error; see the daemon's log"))
        finally:
            if large:
                collector.release()

    async def _run(self, method, call, params, large=False):
        try:
            answer = encode_result(call.request_id, await method.handler(call, **params))
        except DynamoError as exc:
            answer = encode_error(call.request_id, exc)
        except Exception:
            log.exception("internal error in %s request %r", method.name, call.request_id)
            answer = encode_error(call.request_id, DynamoError("internal error; see the daemon's log"))
        finally:
            self.tasks.discard(asyncio.current_task())
            if large:
                params = None  # the document goes by reference counting, unseen
                collector.release()
        self.send(answer)
        self._drain_backlog()

    def send_event(self, rid, event: dict):
        self.send(encode_event(rid, event))

    async def receive_fds(self, count: int, rid) -> list[int]:
        """Ask the client for `count` descriptors and receive them (SCM_RIGHTS).

        Reading pauses before the client is asked, so the byte that carries
        the descriptors is read here, never by the transport (which would
        drop them silently).
        """
        self.receiving_fds = True
        self._update_reading()
        loop = asyncio.get_running_loop()
        sock = socket.socket(fileno=os.dup(self.transport.get_extra_info("socket").fileno()))
        sock.setblocking(False)
        received = loop.create_future()

        def readable():
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1, count)
            except BlockingIOError:
                return
            except OSError as exc:
                fds, data = [], exc
            if not received.done():
                received.set_result((data, fds))

        loop.add_reader(sock.fileno(), readable)
        try:
            self.send_event(rid, {"event": "send_fds", "count": count})
            data, fds = await asyncio.wait_for(received, FD_TIMEOUT)
        except asyncio.TimeoutError:
            raise InvalidRequest(f"no descriptors arrived within {FD_TIMEOUT:g} s") from None
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
            self.receiving_fds = False
            self._update_reading()
        if len(fds) != count:
            for fd in fds:
                os.close(fd)
            raise InvalidRequest(f"expected {count} descriptors (standard input, output and "
                                 f"error), received {len(fds)}")
        return fds

    def send(self, *messages: bytes):
        """Write whole lines; writelines hands them to one writev without joining them."""
        if not self.closed and not self.transport.is_closing():
            self.transport.writelines(messages)

    def refuse(self, error: DynamoError):
        """Answer once with `error` and close (used when the daemon cannot take the peer)."""
        self.send(encode_error(None, error))
        self.transport.close()
