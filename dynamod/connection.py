"""One client connection: framing, dispatch, back-pressure.

Requests are handled as they arrive (a client may pipeline); answers carry
the request id and may come out of order when a request waits for a commit.
The connection stops reading while the client is not reading its answers
(the transport's write buffer is full) or while too many of its requests are
in flight, so no client can make the daemon buffer without bound.  It ends
(at the client's end of input, or after a line over the limit) only once
every request read before has its answer.

Before identity a peer may send only short lines (`authenticate` fits), so an
unregistered account can neither fill the daemon's memory nor stall its loop
decoding a huge line; the unfinished lines of all peers but the superuser
share one budget.  A connection with nothing running is closed once idle.
Refusals are logged at most a few a peer at a time (`refusals`).
"""

import asyncio
import logging
import os
import socket
import time
from collections import deque

from . import collector, descriptors
from .auth.identity import Peer
from .auth.policy import authorize
from .errors import Busy, DynamoError, InvalidRequest, ParseError
from .logs import RateLimited
from .methods import lookup
from .methods.registry import Call
from .protocol import (LineBuffer, LineNotRead, LineTooLong, decode_request, encode_error,
                       encode_event, encode_result)

FD_TIMEOUT = 30.0  # seconds a client has to pass its descriptors once asked
LARGE_REQUEST = 1 << 20  # handled with the collector paused (collector.py)
WRITE_BATCH = 64 * 1024  # answers written together at most (the transport's high-water mark)
# One connection's pass over its pipelined requests lasts at most this long; the rest of
# them waits behind the other connections' events (a burst of costly requests holds no
# one else up for longer).
PASS_SECONDS = 0.005

log = logging.getLogger("dynamod.connection")
refusals = RateLimited(log)   # refused connections and input: a peer cannot flood the log


class Connection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.number = next(server.numbers)   # request ids are the client's: this tells apart
        self.config = server.config
        self.lines = LineBuffer(self.config.max_line_bytes)
        self.backlog = deque()
        self.tasks = set()
        self.transport = None
        self._identity = None
        self._mappings = None    # the users' mappings it was identified under (users.py)
        self.account = None      # the uid its slot counts for (server.admit); None: superuser
        self.held = 0            # bytes of its unfinished line in the server's budget
        self.last_active = time.monotonic()  # input received, or a request that ran ended
        self.write_paused = False
        self.reading_paused = False
        self.receiving_fds = False  # reading is paused for descriptors (SCM_RIGHTS)
        self.challenge = None       # the X.509 challenge issued on this connection
        self._unread = None         # its socket, with descriptors left unread (receive_fds)
        self.ending = False      # no more requests will be read
        self.farewell = None     # the error to send last, before closing
        self.closed = False
        self.resuming = False    # its pass over the backlog ended early: it goes on soon

    @property
    def identity(self):
        return self._identity

    @identity.setter
    def identity(self, identity):
        """Set at connect and by a successful `authenticate`: the line limit follows it."""
        self._identity = identity
        self._mappings = self.server.users.mappings
        self.update_line_limit()

    def _identify_again(self):
        """A user, DN or account changed since this peer was identified: it is who the
        users now say (an account taken back or a user deleted acts no more as them)."""
        before = self._identity
        self.identity = self.server.authenticator.again(before)
        if self._identity != before:
            log.info("connection %d: %s is now %s (the users changed)", self.number,
                     before.describe(), self._identity.describe())

    def update_line_limit(self):
        """The short limit before identity (max_unidentified_line_bytes), else
        max_line_bytes; also applied to open connections on SIGHUP."""
        limit = self.config.max_line_bytes
        if self._identity.name is None:
            limit = min(limit, self.config.max_unidentified_line_bytes)
        self.lines.max_line = limit

    # ------------------------------------------------------ transport events
    def connection_made(self, transport):
        self.transport = transport
        peer = Peer.of(transport.get_extra_info("socket"))
        self.identity = self.server.authenticator.identify(peer)
        if not self.server.admit(self):
            return
        log.debug("connection %d from %s", self.number, self.identity.describe())

    def data_received(self, data):
        self.last_active = time.monotonic()
        try:
            self.backlog.extend(self.lines.feed(data))
            self._hold_input()
        except (LineTooLong, LineNotRead) as exc:  # the connection ends after the lines before
            if isinstance(exc, LineTooLong) and self.lines.max_line < self.config.max_line_bytes:
                exc.message += (f" for a peer not yet identified (max_unidentified_line_bytes; "
                                f"identified peers may send {self.config.max_line_bytes} "
                                f"bytes): {self.identity.refusal}; or the peer proves an X.509 "
                                f"identity (authenticate)")
                exc.details.update(uid=self.identity.peer.uid, needs="identity")
            who = self.identity.describe()
            refusals.warning(who, "closing connection of %s: %s", who, exc.message)
            self.backlog.extend(exc.lines)
            self.ending, self.farewell = True, exc
        self._drain_backlog()

    def _hold_input(self):
        """Count the unfinished line in the budget all peers but the superuser share
        (max_buffered_bytes); the line that grows past it is dropped, ending the connection."""
        if self.account is None:
            return
        grown = self.lines.pending - self.held
        self.held += grown
        self.server.buffered += grown
        budget = self.config.max_buffered_bytes
        if grown > 0 and self.server.buffered > budget:
            self.server.buffered -= self.held
            self.held = 0
            self.lines.drop()
            raise LineNotRead(f"dynamod holds more unfinished requests than its budget of "
                              f"{budget} bytes (max_buffered_bytes); the request this "
                              f"connection was sending was dropped, not done: try again later",
                              [])

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
        """Free its input now.  The error kept for the farewell refers, by its traceback,
        to the read that raised it and to this connection: a cycle, which a change moves
        to the collector's oldest generation unwalked (collector.py), so that each cut
        connection's last read (up to 256 KiB) stayed until a full collection."""
        self.closed = True
        self.backlog.clear()
        self.lines.drop()
        self.farewell = None
        self.server.buffered -= self.held
        self.held = 0
        self.server.forget(self)
        if self._unread is not None:   # after the transport closes its own (the next step)
            asyncio.get_running_loop().call_soon(
                descriptors.close_later, [self._unread.detach()], self.identity.peer.uid)
            self._unread = None

    def idle_for(self, now: float) -> float:
        """Seconds without input or a request ending; 0 while a request runs (an attached
        application, a change waiting for its commit), which is never cut."""
        return 0.0 if self.tasks else now - self.last_active

    def close_idle(self, timeout: float):
        """Give the slot back: `busy` (reason idle), or a plain close when the peer does not
        even read what is already written (a close would wait for it)."""
        log.info("closing connection of %s: idle for %g s", self.identity.describe(), timeout)
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.refuse(Busy(f"dynamod closed this connection: nothing was sent or running on "
                             f"it for {timeout:g} s (idle_timeout); connect again",
                             reason="idle"))

    # ------------------------------------------------------------ dispatch
    def _busy(self) -> bool:
        return (self.write_paused or self.receiving_fds
                or len(self.tasks) >= self.config.max_requests_in_flight)

    def _drain_backlog(self):
        """Answer the lines read while nothing holds the connection back.  The answers of
        one pass go out together (one system call for a pipelined burst), a batch at a
        time, so that the high-water mark of a client that does not read still stops
        the pass; a pass lasts PASS_SECONDS at most, and goes on after the other
        connections' events."""
        batch, size = [], 0
        ends = time.monotonic() + PASS_SECONDS
        while self.backlog and not self._busy() and not self.closed:
            answer = self._dispatch(self.backlog.popleft())
            if answer is not None:
                batch.append(answer)
                size += len(answer)
                if size >= WRITE_BATCH:
                    self.send(*batch)
                    batch, size = [], 0
            if self.backlog and time.monotonic() > ends:   # the others' turn first
                if not self.resuming:
                    self.resuming = True
                    asyncio.get_running_loop().call_soon(self._resume)
                break
        if batch:
            self.send(*batch)
        if self.ending and not self.backlog and not self.tasks:
            if self.farewell is not None:
                self.send(encode_error(None, self.farewell))
            self.transport.close()
        self._update_reading()

    def _resume(self):
        self.resuming = False
        self._drain_backlog()

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
            if self._mappings != self.server.users.mappings:
                self._identify_again()
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
            running = method.handler(call, **params)
            params = None   # the handler holds what it keeps (and may let go of it)
            answer = encode_result(call.request_id, await running)
        except DynamoError as exc:
            answer = encode_error(call.request_id, exc)
        except Exception:
            log.exception("internal error in %s request %r", method.name, call.request_id)
            answer = encode_error(call.request_id, DynamoError("internal error; see the daemon's log"))
        finally:
            self.tasks.discard(asyncio.current_task())
            self.last_active = time.monotonic()
            if large:
                collector.release()
        self.send(answer)
        self._drain_backlog()

    def send_event(self, rid, event: dict):
        self.send(encode_event(rid, event))

    async def receive_fds(self, count: int, rid) -> list[int]:
        """Ask the client for `count` descriptors and receive them (SCM_RIGHTS).

        Reading pauses before the client is asked, so the byte that carries
        the descriptors is read here, never by the transport (which would
        drop them, the kernel closing them on the event loop).  The socket
        takes descriptors only until that byte is read (descriptors.py); what
        else came with them is read here too, its descriptors closed in a thread.
        An account whose descriptors wait to be closed beyond its budget is not
        asked (`busy`); a connection that sends more than it is ended unread.
        """
        owner = self.identity.peer.uid
        waiting = descriptors.pending(owner)
        if waiting >= descriptors.MAX_PENDING:
            raise Busy(f"{waiting} descriptors uid {owner} passed before are still being "
                       f"closed (their last close waits: a socket lingering on unsent data?); "
                       f"try again once they are", reason="descriptors")
        self.receiving_fds = True
        self._update_reading()
        loop = asyncio.get_running_loop()
        sock = socket.socket(fileno=os.dup(self.transport.get_extra_info("socket").fileno()))
        sock.setblocking(False)
        received = loop.create_future()

        def readable():
            try:
                data, fds, _, _ = socket.recv_fds(sock, 1, descriptors.MAX_FDS)
            except BlockingIOError:
                return
            except OSError as exc:
                fds, data = [], exc
            loop.remove_reader(sock.fileno())   # what follows is the transport's to read
            if received.done():
                descriptors.close_later(fds, owner)
            else:
                received.set_result((data, fds))

        refusing = descriptors.allow(sock, True)
        loop.add_reader(sock.fileno(), readable)
        rest, complete, fds = b"", True, []
        try:
            self.send_event(rid, {"event": "send_fds", "count": count})
            data, fds = await asyncio.wait_for(received, FD_TIMEOUT)
        except asyncio.TimeoutError:
            raise InvalidRequest(f"no descriptors arrived within {FD_TIMEOUT:g} s") from None
        finally:
            loop.remove_reader(sock.fileno())
            if refusing and descriptors.allow(sock, False):
                rest, complete = descriptors.drain(sock, owner)
            if complete:
                sock.close()
            else:
                self._unread = sock
            self.receiving_fds = False
            if rest and not self.closed:
                self.data_received(rest)
            if not complete:
                self.ending = True   # nothing more is read; the socket closes in a thread
            self._update_reading()
        if not complete:
            descriptors.close_later(fds, owner)
            raise InvalidRequest(f"more descriptors were sent than asked for (over "
                                 f"{descriptors.MAX_PENDING}); the connection ends")
        if len(fds) != count:
            descriptors.close_later(fds, owner)
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
