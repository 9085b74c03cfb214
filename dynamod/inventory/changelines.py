"""The change log's lines of an entry in compact form (`changes.journal_entry`): the
runs of a write-back's updates, an injection's new files, blocks and block
replicas as columns.  The change log's writer (a process of its own) makes them,
so this module imports nothing of the inventory.
"""

FILE_LINE = "created file %s size=%r adler32=%r crc32=%r md5=%r"

# The change log's lines of new blocks and block replicas, by `%` (as for files).
CREATED_LINES = {
    "block": "created block %s#%s size=%r num_files=%r is_open=%r last_update=%r",
    "blockreplica": ("created blockreplica %s group=%r is_custodial=%r size=%r "
                     "last_update=%r file_ids=%r")}
CREATED_VALUES = {"block": ("names", "size", "num_files", "is_open", "last_update"),
                  "blockreplica": ("group", "is_custodial", "size", "last_update",
                                   "file_ids")}


def entry_lines(entry: list, prefix: str = "", end: str = "") -> list[str]:
    """The change log's lines of a compact entry (`journal_entry`): plain lines, runs of
    updates each as `Updates.compact` gave it, and new files, blocks and block replicas
    as their columns; each line between `prefix` and `end` (the change log's file: the time and the actor
    before it, a newline after it, made with the line rather than added over the text)."""
    lines = []
    framed = (lambda line: prefix + line + end) if prefix or end else None
    for part in entry:
        if type(part) is str:
            lines.append(prefix + part + end)
            continue
        if "files" in part:   # the columns of new files (new_files)
            lines += map(_framed(FILE_LINE, prefix, end).__mod__, zip(*part["files"]))
            continue
        if "created" in part:   # new blocks or block replicas (`_CREATED`)
            kind = part["created"]
            if kind == "block":
                labels = map(part["datasets"].__getitem__, part["of"])
            else:
                labels = _replica_labels(part, "")
            lines += map(_framed(CREATED_LINES[kind], prefix, end).__mod__,
                         zip(labels, *map(part.__getitem__, CREATED_VALUES[kind])))
            continue
        names, old, new = part["names"], part["old"], part["new"]
        labels = part["labels"] if "labels" in part else _replica_labels(part, "blockreplica ")
        if len(names) == 1:
            name = names[0]
            made = [f"updated {label} {name}: {o!r} -> {v!r}"
                    for label, o, v in zip(labels, old, new)]
        else:
            made = [f"updated {label} " + " ".join(
                        [f"{n}: {o!r} -> {v!r}" for n, o, v in zip(names, os, vs)
                         if o is not v and o != v])
                    for label, os, vs in zip(labels, old, new)]
        lines += map(framed, made) if framed else made
    return lines


def _framed(line: str, prefix: str, end: str) -> str:
    """A `%` line of `entry_lines` between `prefix` and `end`."""
    return prefix.replace("%", "%%") + line + end.replace("%", "%%") if prefix or end else line


def _replica_labels(part: dict, kind: str) -> list[str]:
    """The names of block replicas given in parts (`_replica_names`), after `kind`."""
    sites, datasets = part["sites"], part["datasets"]
    blocks = [f"{datasets[d]}#{name}" for d, name in zip(part["of"], part["blocks"])]
    return [f"{kind}{sites[s]}:{blocks[b]}" for b, s in zip(part["block"], part["site"])]
