"""The daemon's settings, with the embedded defaults a new user needs none of."""

import os
from dataclasses import dataclass, field

from dynamoclient.paths import SOCKET_NAME, default_state_dir


@dataclass
class Config:
    state_dir: str = field(default_factory=lambda: str(default_state_dir()))
    socket: str = ""                 # default: <state_dir>/dynamod.sock
    database: str = ""               # default: <state_dir>/inventory.db
    synchronous: str = "FULL"        # SQLite PRAGMA synchronous: OFF, NORMAL, FULL, EXTRA
    max_line_bytes: int = 64 * 2**20
    max_connections: int = 1024
    max_requests_in_flight: int = 64  # per connection, before it stops being read
    log_level: str = "INFO"
    app_timeout: float = 7200.0      # seconds an application may run when it asks for 0 hours
    kill_grace: float = 10.0         # seconds between SIGTERM and SIGKILL of an application
    work_dir: str = ""               # default: <state_dir>/work (asynchronous output)

    def __post_init__(self):
        self.socket = self.socket or os.path.join(self.state_dir, SOCKET_NAME)
        self.database = self.database or os.path.join(self.state_dir, "inventory.db")
        self.work_dir = self.work_dir or os.path.join(self.state_dir, "work")
