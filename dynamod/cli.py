"""`dynamod`: parse the command line into a Config and run the server."""

import argparse
import asyncio
import logging
import os
import sys

from . import __version__
from .config import Config
from .server import run

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_args(argv=None) -> tuple[Config, argparse.Namespace]:
    defaults = Config()
    parser = argparse.ArgumentParser(
        prog="dynamod",
        description="The Dynamo inventory daemon: holds the inventory in memory, serves it "
                    "on a Unix socket, persists every change to SQLite.",
    )
    parser.add_argument("--state-dir", default=defaults.state_dir,
                        help="directory for the database and the socket (default: %(default)s)")
    parser.add_argument("--socket", help="socket path (default: STATE_DIR/dynamod.sock)")
    parser.add_argument("--database", help="SQLite file (default: STATE_DIR/inventory.db)")
    parser.add_argument("--synchronous", default=defaults.synchronous,
                        choices=("OFF", "NORMAL", "FULL", "EXTRA"), type=str.upper,
                        help="SQLite durability of each commit (default: %(default)s)")
    parser.add_argument("--max-line-bytes", type=int, default=defaults.max_line_bytes,
                        help="longest request line accepted (default: %(default)s)")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections,
                        help="connections served at once (default: %(default)s)")
    parser.add_argument("--log-level", default=defaults.log_level, type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="(default: %(default)s)")
    parser.add_argument("--detach", action="store_true",
                        help="run in the background: return once the daemon is ready, "
                             "logging to STATE_DIR/dynamod.log")
    parser.add_argument("--version", action="version", version=f"dynamod {__version__}")
    args = parser.parse_args(argv)
    config = Config(state_dir=os.path.abspath(args.state_dir), socket=args.socket or "",
                    database=args.database or "", synchronous=args.synchronous,
                    max_line_bytes=args.max_line_bytes, max_connections=args.max_connections,
                    log_level=args.log_level)
    return config, args


def main(argv=None) -> int:
    config, args = parse_args(argv)
    if args.detach:
        return _detach(config)
    logging.basicConfig(level=config.log_level, format=LOG_FORMAT, stream=sys.stderr)
    return _serve(config)


def _serve(config: Config, on_ready=None) -> int:
    import uvloop

    return uvloop.run(run(config, on_ready))


def _detach(config: Config) -> int:
    """Fork a background daemon and wait until it listens (or says why it could not)."""
    os.makedirs(config.state_dir, mode=0o700, exist_ok=True)
    log_path = os.path.join(config.state_dir, "dynamod.log")
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            status = ready.read()
        if status.startswith(b"ready"):
            print(f"dynamod {status[6:].decode()} listening on {config.socket}; log: {log_path}")
            return 0
        print(f"dynamod failed to start; see {log_path}", file=sys.stderr)
        with open(log_path, errors="replace") as log_file:
            sys.stderr.write("".join(log_file.readlines()[-5:]))
        return 1
    os.close(read_end)
    os.setsid()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    logging.basicConfig(level=config.log_level, format=LOG_FORMAT, stream=sys.stderr)

    def ready(server):
        os.write(write_end, f"ready pid {os.getpid()}".encode())
        os.close(write_end)

    code = _serve(config, ready)
    os._exit(code)
