"""The daemon's settings: embedded defaults, a TOML file, command-line options.

Later sources win: defaults < the file (`--config`, by default
/etc/dynamo/dynamod.toml when it exists and the daemon runs as root) < options.
Every key of the file is checked: an unknown key or a bad value is an error
that names `[table] key`, so a typo never silently falls back to a default.
"""

import os
import tomllib
from dataclasses import dataclass, field, fields

from dynamoclient.paths import SOCKET_NAME, default_state_dir

SYSTEM_CONFIG = "/etc/dynamo/dynamod.toml"
GRID_CA_PATH = "/etc/grid-security/certificates"
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """A bad configuration; the text names the key."""


@dataclass
class Config:
    state_dir: str = field(default_factory=lambda: str(default_state_dir()))
    socket: str = ""                 # default: <state_dir>/dynamod.sock
    database: str = ""               # default: <state_dir>/inventory.db
    synchronous: str = "FULL"        # SQLite PRAGMA synchronous
    log_level: str = "INFO"
    change_log: str = ""             # default: <state_dir>/changes.log
    shutdown_timeout: float = 30.0   # seconds SIGTERM waits for requests in flight
    max_line_bytes: int = 64 * 2**20
    max_unidentified_line_bytes: int = 256 * 2**10  # before identity: authenticate fits
    max_buffered_bytes: int = 256 * 2**20  # unfinished lines of all connections together
    max_connections: int = 1024
    superuser_reserve: int = 16      # of max_connections, only the superuser may use
    max_connections_per_account: int = 64  # per uid (not the superuser); 0: no limit
    idle_timeout: float = 300.0      # seconds a connection may wait with nothing running
    max_requests_in_flight: int = 64  # per connection, before it stops being read
    file_cache: int = 500_000        # files kept in memory (the blocks used last)
    snapshot_idle: float = 30.0      # seconds with no commit before a snapshot is written
    snapshot_interval: float = 600.0  # seconds between two snapshots, at least
    rebuild: bool = False            # --rebuild: load from rows, not from the snapshot
    app_timeout: float = 7200.0      # seconds an application may run when it asks for 0 hours
    kill_grace: float = 10.0         # seconds between SIGTERM and SIGKILL of an application
    work_dir: str = ""               # default: <state_dir>/work (asynchronous output)
    app_max_per_user: int = 8        # applications active at once per user (not the superuser)
    app_max_total: int = 32          # applications active at once in all
    app_max_title: int = 1024        # bytes of an application's title
    app_max_path: int = 4096         # bytes of its path
    app_max_args: int = 65536        # bytes of its arguments together
    app_retention_days: float = 30.0  # application records (and work areas) are kept so long
    writer_max_time: float = 21600.0  # seconds a read/write application may run (superuser: any)
    app_max_time: float = 86400.0    # seconds a read-only one may run (superuser: any)
    app_memory: int = 4 * 2**30      # bytes an application may map beyond what it inherits (0: any)
    app_cpu_time: int = 0            # CPU seconds of an application (RLIMIT_CPU; 0: no limit)
    app_processes: int = 256         # processes of the application's uid (RLIMIT_NPROC), pids.max
    app_file_size: int = 4 << 30     # bytes of any one file an application writes (RLIMIT_FSIZE)
    app_max_changes: int = 256 << 20  # bytes of a writer's changes (applied in one step)
    cgroup: str = "auto"             # auto, off, or the cgroup v2 directory to put applications in
    ca_path: str = ""                # CA directory or bundle; default /etc/grid-security/...
    config_file: str = ""            # where the settings came from (informational)
    # [partitions] name = "condition" or "[A, B]": fixed here, not changeable by protocol
    partitions: dict = field(default_factory=dict)

    def __post_init__(self):
        self.socket = self.socket or os.path.join(self.state_dir, SOCKET_NAME)
        self.database = self.database or os.path.join(self.state_dir, "inventory.db")
        self.work_dir = self.work_dir or os.path.join(self.state_dir, "work")
        self.change_log = self.change_log or os.path.join(self.state_dir, "changes.log")
        if not self.ca_path and os.path.isdir(GRID_CA_PATH):
            self.ca_path = GRID_CA_PATH

    def effective(self) -> str:
        """The settings as a TOML file would give them (for --check-config): the output
        read back as a configuration gives the same settings."""
        lines = []
        for table, keys in FILE_KEYS.items():
            lines.append(f"[{table}]")
            for key, (attribute, _) in keys.items():
                value = getattr(self, attribute)
                if attribute == "ca_path" and not value:   # "" is no path: refused if read
                    lines.append(f"# ca_path: none (no {GRID_CA_PATH}): peers are "
                                 f"identified by their Unix account only")
                    continue
                lines.append(f"{key} = {_toml(value)}")
            lines.append("")
        lines.append("[partitions]")
        for name, definition in self.partitions.items():
            lines.append(f"{_toml(name)} = {_toml(definition)}")
        lines.append("")
        return "\n".join(lines)


def _toml(value) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _path(value):
    """Absolute: a relative path would be taken from whatever directory the daemon, or
    `dynamod check`, happens to be started in (systemd starts it in /)."""
    if not isinstance(value, str) or not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return value


def _choice(choices):
    def check(value):
        if not isinstance(value, str) or value.upper() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value.upper()
    return check


def _non_negative(value):
    if type(value) is not int or value < 0:
        raise ValueError("must be an integer, 0 or more (0: no limit)")
    return value


def _non_negative_number(value):
    if type(value) not in (int, float) or value < 0:
        raise ValueError("must be a number, 0 or more (0: no limit)")
    return float(value)


def _cgroup(value):
    if not isinstance(value, str) or not (value in ("auto", "off") or os.path.isabs(value)):
        raise ValueError('must be "auto", "off" or an absolute path')
    return value


def _positive(kind):
    def check(value):
        if type(value) not in (int, float) or value <= 0 or (kind is int and type(value) is not int):
            raise ValueError(f"must be a positive {'integer' if kind is int else 'number'}")
        return kind(value)
    return check


positive_int = _positive(int)   # also the command line's check of the same keys

# [table] key -> (Config attribute, check)
FILE_KEYS = {
    "daemon": {
        "state_dir": ("state_dir", _path),
        "socket": ("socket", _path),
        "database": ("database", _path),
        "synchronous": ("synchronous", _choice(SYNCHRONOUS)),
        "log_level": ("log_level", _choice(LOG_LEVELS)),
        "change_log": ("change_log", _path),
        "shutdown_timeout": ("shutdown_timeout", _positive(float)),
        "max_line_bytes": ("max_line_bytes", positive_int),
        "max_unidentified_line_bytes": ("max_unidentified_line_bytes", positive_int),
        "max_buffered_bytes": ("max_buffered_bytes", positive_int),
        "max_connections": ("max_connections", positive_int),
        "superuser_reserve": ("superuser_reserve", _non_negative),
        "max_connections_per_account": ("max_connections_per_account", _non_negative),
        "idle_timeout": ("idle_timeout", _non_negative_number),
        "max_requests_in_flight": ("max_requests_in_flight", positive_int),
        "file_cache": ("file_cache", positive_int),
        "snapshot_idle": ("snapshot_idle", _non_negative_number),
        "snapshot_interval": ("snapshot_interval", _non_negative_number),
    },
    "applications": {
        "timeout": ("app_timeout", _positive(float)),
        "kill_grace": ("kill_grace", _positive(float)),
        "work_dir": ("work_dir", _path),
        "max_per_user": ("app_max_per_user", positive_int),
        "max_total": ("app_max_total", positive_int),
        "max_title_bytes": ("app_max_title", positive_int),
        "max_path_bytes": ("app_max_path", positive_int),
        "max_args_bytes": ("app_max_args", positive_int),
        "retention_days": ("app_retention_days", _positive(float)),
        "writer_max_time": ("writer_max_time", _positive(float)),
        "max_time": ("app_max_time", _positive(float)),
        "memory": ("app_memory", _non_negative),
        "cpu_time": ("app_cpu_time", _non_negative),
        "processes": ("app_processes", _non_negative),
        "file_size": ("app_file_size", _non_negative),
        "max_changes_bytes": ("app_max_changes", positive_int),
        "cgroup": ("cgroup", _cgroup),
    },
    "auth": {
        "ca_path": ("ca_path", _path),
    },
}


def file_key(attribute: str) -> str:
    """How the configuration file names the setting held in Config `attribute`
    (`[applications] timeout` for app_timeout), read from FILE_KEYS backwards; one it
    has not (rebuild: an option only) by the attribute's own name."""
    return next((f"[{table}] {key}" for table, keys in FILE_KEYS.items()
                 for key, (name, _) in keys.items() if name == attribute), attribute)


def read_file(path: str) -> dict:
    """The settings a TOML file gives, as {Config attribute: value}."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}), so "
                          f"not a TOML configuration") from None
    except tomllib.TOMLDecodeError as exc:
        hint = ("; it looks like JSON, as the original's server_config.json was: dynamod "
                "reads TOML, and systemd/dynamod.toml.example shows every key"
                if raw.lstrip().startswith(b"{") else "")
        raise ConfigError(f"{path}: not valid TOML: {exc}{hint}") from None
    settings = {}
    for table, keys in data.items():
        if table == "partitions":
            if not isinstance(keys, dict):
                raise ConfigError(f"{path}: partitions must be a table")
            settings["partitions"] = _partitions(path, keys)
            continue
        if not isinstance(keys, dict) and table not in FILE_KEYS:
            raise ConfigError(f"{path}: {table} is outside any table: " + (
                f"put it under [{_table_of(table)}]" if _table_of(table) else
                f"no table has that key (tables: {', '.join(FILE_KEYS)}, partitions)"))
        if table not in FILE_KEYS:
            raise ConfigError(f"{path}: unknown table [{table}] "
                              f"(known: {', '.join(FILE_KEYS)}, partitions)")
        if not isinstance(keys, dict):
            raise ConfigError(f"{path}: {table} must be a table")
        for key, value in keys.items():
            if key not in FILE_KEYS[table]:
                elsewhere = (f"; it belongs in [{_table_of(key)}]" if _table_of(key) else
                             f" (known: {', '.join(FILE_KEYS[table])})")
                raise ConfigError(f"{path}: unknown key {key!r} in [{table}]{elsewhere}")
            attribute, check = FILE_KEYS[table][key]
            try:
                settings[attribute] = check(value)
            except ValueError as exc:
                raise ConfigError(f"{path}: [{table}] {key} {exc}, not {value!r}") from None
    return settings


def _table_of(key: str) -> str | None:
    """The table a key belongs in: a key written above every table (the original's
    flat habit) or under the wrong one is told where it goes."""
    return next((table for table, keys in FILE_KEYS.items() if key in keys), None)


def _partitions(path: str, keys: dict) -> dict:
    """[partitions]: each a condition or `[A, B]`, checked as set_partition checks them."""
    from .errors import DynamoError
    from .inventory.partitions import Usage, check_name, from_definition
    found = {}
    for name, definition in keys.items():
        if not isinstance(definition, str):
            raise ConfigError(f"{path}: [partitions] {name} must be a string (a condition "
                              f"or [A, B]), not {definition!r}")
        try:
            found[name] = from_definition(check_name(name), definition, origin="config")
        except DynamoError as exc:
            raise ConfigError(f"{path}: [partitions] {name}: {exc.message}") from None
    try:
        Usage().check(found)
    except DynamoError as exc:
        raise ConfigError(f"{path}: [partitions]: {exc.message}") from None
    return dict(keys)


def build(config_file: str | None, options: dict) -> Config:
    """Defaults, then the file, then the command-line options that were given."""
    if config_file is None and os.geteuid() == 0 and os.path.exists(SYSTEM_CONFIG):
        config_file = SYSTEM_CONFIG
    return from_settings(read_file(config_file) if config_file else {}, config_file, options)


def from_settings(read: dict, config_file: str | None, options: dict) -> Config:
    """The configuration of settings `read` from `config_file` (read_file), then the
    command-line options that were given."""
    settings = {**read, **{k: v for k, v in options.items() if v is not None}}
    known = {f.name for f in fields(Config)}
    config = Config(**{k: v for k, v in settings.items() if k in known},
                    config_file=config_file or "")
    _check_together(config, config_file or "the options")
    return config


def _check_together(config: Config, source: str):
    """Limits that only make sense against each other: every peer must have a connection
    slot, and the budget of buffered input must hold one line of the longest kind."""
    if config.superuser_reserve >= config.max_connections:
        raise ConfigError(f"{source}: [daemon] superuser_reserve ({config.superuser_reserve}) "
                          f"must be less than max_connections ({config.max_connections}), "
                          f"or only the superuser could connect")
    if config.max_buffered_bytes < config.max_line_bytes:
        raise ConfigError(f"{source}: [daemon] max_buffered_bytes ({config.max_buffered_bytes})"
                          f" must be at least max_line_bytes ({config.max_line_bytes})")
