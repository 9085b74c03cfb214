"""`dynamo-inject`: add (or with --delete remove) inventory objects.

The input is an injection document (a JSON file, or - for standard input) or
the same document built from command-line options.  The daemon applies it as
one transaction; this tool prints what was created, updated and deleted.
Several files are several documents, each its own transaction, applied in
order and pipelined: the next is read and sent while the daemon applies and
commits the previous one.
"""

import functools
import json
import math
import sys
import time

from .arguments import Parser
from .connection import (Client, ConnectionFailed, RemoteError, add_arguments, interruptible,
                         output_closed, parse_arguments)
from .jsonpath import line_of
from .writer import describe_writer

KINDS = ("sites", "groups", "datasets", "blocks", "files", "datasetreplicas", "blockreplicas")
PROGRESS_THRESHOLD = 1 << 20  # show progress for documents above 1 MiB on a terminal
IN_FLIGHT = 2  # documents sent ahead of their answers: enough to overlap, little memory
WIRE_INTEGERS = range(-(2**63), 2**64)  # the integers the daemon's JSON parser reads as such
WHITESPACE = b" \t\n\r"  # JSON's
UTF8_BOM = b"\xef\xbb\xbf"   # RFC 8259: a parser may ignore it (orjson refuses it)


class UsageError(Exception):
    pass


def build_parser() -> Parser:
    parser = Parser(
        prog="dynamo-inject",
        description="Inject objects into the Dynamo inventory (or delete them with --delete). "
                    "Give a JSON document, or build one with the options below.",
        epilog="Examples:\n"
               "  dynamo-inject sites.json\n"
               "  dynamo-inject --site T2_US_XYZ,t2.xyz.edu,disk,gsiftp://t2.xyz.edu/cms,ready\n"
               "  dynamo-inject --dataset /A/B/RAW --block b1 --file /store/f1.root,1000\n"
               "  dynamo-inject --delete --dataset-replica T2_US_XYZ:/A/B/RAW\n"
               "  generate.py | dynamo-inject -      # standard input, named as -\n"
               "  dynamo-inject --dry-run sites.json data/*.json",
    )
    parser.add_argument("json", nargs="*", metavar="FILE.json",
                        help="injection document(s), each applied as one transaction, in "
                             "order; - reads standard input")
    parser.add_argument("-s", "--site", action="append", default=[], metavar="SPEC",
                        help="name[,host[,storage_type[,backend[,status]]]]")
    parser.add_argument("-g", "--group", action="append", default=[], metavar="SPEC",
                        help="name[,olevel]")
    parser.add_argument("-d", "--dataset", action="append", default=[], metavar="SPEC",
                        help="name[,status[,data_type]]")
    parser.add_argument("-b", "--block", action="append", default=[], metavar="NAME",
                        help="a block of the (one) --dataset")
    parser.add_argument("-f", "--file", action="append", default=[], metavar="SPEC",
                        help="lfn,size[,site]: a file of the (one) --block "
                             "(with --delete, the lfn alone will do)")
    parser.add_argument("-p", "--dataset-replica", action="append", default=[], metavar="SPEC",
                        help="site:dataset[,group]")
    parser.add_argument("-r", "--block-replica", action="append", default=[], metavar="SPEC",
                        help="block[,group]: a block replica of the (one) --dataset-replica")
    parser.add_argument("-e", "--block-replica-file", action="append", default=[],
                        metavar="LFN", help="a file the (one) --block-replica holds (without "
                                            "any, it holds all of its block's files)")
    parser.add_argument("-X", "--delete", action="store_true",
                        help="remove the named objects (and what they contain) instead")
    parser.add_argument("-n", "--dry-run", action="store_true",
                        help="validate and report what would change; change nothing")
    parser.add_argument("--json", "-A", "--raw", dest="as_json", action="store_true",
                        help="print the counts as JSON")
    parser.add_argument("-o", "--host", metavar="HOST",
                        help="refused: dynamod is reached through a local Unix socket, not a "
                             "web server (use --socket)")
    add_arguments(parser)
    return parser


def _split(spec: str, option: str, names: tuple) -> dict:
    """The fields of a comma-separated `spec`; one too many is refused, not left in the
    last field (a status of 'ready,extra')."""
    parts = spec.split(",")
    if len(parts) > len(names):
        raise UsageError(f"{option} {spec!r}: too many fields, {len(parts)} (at most "
                         f"{len(names)}: {','.join(names)})")
    if not parts[0]:
        raise UsageError(f"{option} {spec!r}: the name is empty")
    return {k: v for k, v in zip(names, parts) if v != ""}


def document_from_options(args) -> dict:
    """The injection document the command-line options describe."""
    doc = {}
    if args.site:
        doc["site"] = [_split(s, "--site", ("name", "host", "storage_type", "backend",
                                           "status")) for s in args.site]
    if args.group:
        doc["group"] = [_split(g, "--group", ("name", "olevel")) for g in args.group]
    if args.dataset:
        doc["dataset"] = [_split(d, "--dataset", ("name", "status", "data_type"))
                          for d in args.dataset]
    if args.block:
        if len(args.dataset) != 1:
            raise UsageError("--block needs exactly one --dataset")
        doc["dataset"][0]["blocks"] = [{"name": b} for b in args.block]
    if args.file:
        if len(args.block) != 1:
            raise UsageError("--file needs exactly one --block")
        doc["dataset"][0]["blocks"][0]["files"] = [_file_spec(f, args.delete) for f in args.file]
    if args.dataset_replica:
        doc["datasetreplica"] = [_replica_spec(p) for p in args.dataset_replica]
    if args.block_replica:
        if len(args.dataset_replica) != 1:
            raise UsageError("--block-replica needs exactly one --dataset-replica")
        doc["datasetreplica"][0]["blockreplicas"] = [
            _split(r, "--block-replica", ("block", "group")) for r in args.block_replica]
    if args.block_replica_file:
        if len(args.block_replica) != 1:
            raise UsageError("--block-replica-file needs exactly one --block-replica")
        doc["datasetreplica"][0]["blockreplicas"][0]["files"] = args.block_replica_file
    return doc


def _file_spec(spec: str, deleting: bool) -> dict:
    """lfn,size[,site]; a file to delete is named by its LFN alone."""
    parts = spec.split(",")
    if len(parts) not in ((1, 2, 3) if deleting else (2, 3)) or not parts[0]:
        raise UsageError(f"--file {spec!r}: expected lfn,size[,site]")
    entry = {"name": parts[0]}
    if len(parts) == 1:
        return entry
    try:
        entry["size"] = int(parts[1])
    except ValueError:
        raise UsageError(f"--file {spec!r}: size {parts[1]!r} is not an integer") from None
    if len(parts) == 3 and parts[2]:
        entry["site"] = parts[2]
    return entry


def _replica_spec(spec: str) -> dict:
    location, _, group = spec.partition(",")
    site, colon, dataset = location.partition(":")
    if not colon or not site or not dataset or "," in group:
        raise UsageError(f"--dataset-replica {spec!r}: expected site:dataset[,group]")
    entry = {"site": site, "dataset": dataset}
    if group:
        entry["group"] = group
    return entry


def document_name(path: str) -> str:
    """How messages name the input: `-` is standard input."""
    return "<stdin>" if path == "-" else path


class Document:
    """A document as read from its file: what goes on the wire (`data`), and its text,
    decoded only when a message must name a line of it."""

    def __init__(self, name: str, raw: bytes):
        self.name, self.raw, self.data = name, raw, None
        self.names = {}   # {section: the names of its objects}: what the document creates

    def read(self, value: dict) -> dict:
        """Take note of the sites, groups and datasets the document (read) gives."""
        self.names = {section: {item["name"] for item in value[section]
                                if isinstance(item, dict) and isinstance(item.get("name"), str)}
                      for section in ("site", "group", "dataset")
                      if isinstance(value.get(section), list)}
        return value

    @functools.cached_property
    def text(self) -> str:
        text = self.raw.decode("utf-8")   # as a text file reads it: its lines end in \n
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def read_document(path: str) -> Document:
    """The document at `path` (- for standard input), checked as the daemon will read it.

    orjson reads it, and writes back what it read: when that is the text itself short
    of its whitespace, the reading was exact (no key given twice, no integer turned
    into a float) and that compact form is sent.  Otherwise, or without orjson, the
    json module reads it again to say what is wrong and where (`_read_exactly`)."""
    name = document_name(path)
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    if raw.startswith(UTF8_BOM):   # a Windows editor's mark: JSON readers may ignore it
        raw = raw[len(UTF8_BOM):]
    document = Document(name, raw)
    try:
        import orjson
    except ImportError:  # the light clients work without it
        document.data = document.read(_require_object(_read_exactly(document), name))
        return document
    try:
        compact = orjson.dumps(document.read(_require_object(orjson.loads(raw), name)))
    except orjson.JSONDecodeError as exc:
        _read_exactly(document)  # the json module's words for it, as a rule
        raise UsageError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg} "
                         f"(column {exc.colno})") from None
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: sent as it is
        _read_exactly(document)
        compact = raw.replace(b"\n", b" ")
    else:
        if raw != compact and (raw.translate(None, WHITESPACE)
                               != compact.translate(None, WHITESPACE)):
            _read_exactly(document)
    document.data = orjson.Fragment(compact)
    return document


JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
              bool: "true or false", type(None): "null"}


def _require_object(value, name: str):
    """`value`, a document: an object of sections; anything else is refused in the
    document's own terms, not in the protocol's."""
    if not isinstance(value, dict):
        raise UsageError(f"{name}: the document must be a JSON object with the keys site, "
                         f"group, dataset, datasetreplica; it is {JSON_TYPES[type(value)]}")
    return value


def _read_exactly(document: Document):
    """The document read by the json module, which names a key given twice, and checked
    by `check_sendable`: raises UsageError with FILE:LINE where there is one."""
    name = document.name
    try:
        text = document.text
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg} "
                         f"(column {exc.colno})") from None
    except RecursionError:
        raise UsageError(f"{name}: invalid JSON: arrays and objects nest too deeply") from None
    except ValueError as exc:  # a repeated key, or an integer of thousands of digits
        raise UsageError(f"{name}: invalid JSON: {exc}") from None
    check_sendable(value, text, name)
    return value


def _unique_keys(pairs: list) -> dict:
    """An object of the document; of a key given twice, json would keep only the last."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _unsendable(value) -> str | None:
    """Why the daemon could not read `value` as it is (None if it can).

    Python reads what the daemon's parser refuses or changes: integers beyond 64
    bits, NaN and infinities, strings with a lone surrogate (from a `\\ud800`
    escape, or from an argument that is not UTF-8)."""
    if isinstance(value, int) and not isinstance(value, bool) and value not in WIRE_INTEGERS:
        return f"the integer {value} does not fit in 64 bits"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a JSON number"
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"{value!r} is not valid Unicode (it holds a lone surrogate)"
    return None


def check_sendable(document, text: str | None = None, name: str = ""):
    """Refuse a value the request could not carry (see `_unsendable`), naming where
    it is: the line of `text`, the document read from `name`, when there is one."""
    pending = [("", None, document)]
    while pending:
        path, key, value = pending.pop()
        problem = _unsendable(key) or _unsendable(value)
        if problem:
            line = line_of(text, path) if text is not None else None
            where = f"{name}:{line}" if line else f"{name}: {path}" if text is not None else path
            raise UsageError(f"{where}: {problem}")
        if isinstance(value, dict):
            pending.extend((f"{path}.{k}" if path else k, k, v) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", None, v) for i, v in enumerate(value))


def format_counts(result: dict) -> str:
    lines = []
    for how in ("created", "updated", "deleted"):
        counts = result.get(how, {})
        items = [f"{k}: {counts[k]}" for k in KINDS if counts.get(k)]
        lines.append(f"{how:8} {', '.join(items) if items else 'nothing'}")
    return "\n".join(lines)


class Progress:
    """A one-line progress report on a terminal's stderr; silent elsewhere."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.started = time.monotonic()

    def show(self, text: str):
        if self.enabled:
            sys.stderr.write(f"\r\033[K{text} ({time.monotonic() - self.started:.1f} s)")
            sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def submit(client: Client, method: str, params: dict, progress: Progress) -> dict:
    """Send the request, reporting progress on large ones, and wait for the answer."""
    def sent(done, total):
        progress.show(f"sent {done * 100 // total}% of {total / 1e6:.1f} MB"
                      + ("; waiting for the daemon to apply and commit" if done == total else ""))
    try:
        return client.call(method, _progress=sent, _on_event=say_waiting, **params)
    finally:
        progress.done()


def say_waiting(event: dict):
    """The daemon holds the request back for a read/write application: say for whom."""
    if event.get("event") == "waiting":
        print(f"dynamo-inject: waiting: {describe_writer(event)} holds the writer slot; "
              f"injections wait until it ends", file=sys.stderr, flush=True)


@interruptible("dynamo-inject", "; each document is applied whole or not at all: --dry-run "
                                "shows what is left to do")
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv and _piped():
        print("dynamo-inject: nothing named to inject: to read the document on standard "
              "input, give - (... | dynamo-inject -; see --help)", file=sys.stderr)
        return 1
    args = parse_arguments(build_parser(), argv)
    if args is None:
        return 0
    method = "delete" if args.delete else "inject"
    try:
        if args.host is not None:
            raise UsageError("-o/--host: dynamod is reached through a local Unix socket, not "
                             "a web server; use --socket PATH or $DYNAMO_SOCKET")
        options = document_from_options(args)
        if args.json and options:
            raise UsageError(f"give either JSON documents or object options, not both: "
                             f"{args.json[0]!r} would be read as a document (an option takes "
                             f"one object: repeat it for more, as in -f A,1 -f B,2)")
        if args.json.count("-") > 1:
            raise UsageError("standard input (-) can be read once")
        if not args.json and not options:
            raise UsageError("nothing to do: give FILE.json (- for standard input) or "
                             "object options such as --site (see --help)")
        if len(args.json) > 1:
            with Client.from_args(args, use_proxy=True) as client:
                return inject_documents(client, method, args)
        document = None
        if args.json:
            document = read_document(args.json[0])
            data = document.data
        else:
            data = options
            check_sendable(data)
        with Client.from_args(args, use_proxy=True) as client:
            show = document is not None and len(document.raw) > PROGRESS_THRESHOLD
            result = submit(client, method, {"data": data, "dry_run": args.dry_run},
                            Progress(show and sys.stderr.isatty()))
    except (UsageError, ConnectionFailed) as exc:
        print(f"dynamo-inject: {exc}", file=sys.stderr)
        return 1
    except RemoteError as exc:
        print(f"dynamo-inject: {_located(exc, document)}", file=sys.stderr)
        return 1
    print_result(result, args)
    return 0


def _piped() -> bool:
    """Whether standard input is a pipe or a file: `cat doc.json | dynamo-inject` meant
    the document, and the help (the bare command's answer) with exit code 0 would tell
    a script that it went in."""
    import os
    import stat

    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _located(exc: RemoteError, document: Document | None) -> str:
    """The daemon's error, prefixed with FILE:LINE of the object it names."""
    where = ""
    path = exc.details.get("path")
    if document is not None and path:
        line = line_of(document.text, path)
        where = f"{document.name}:{line}: " if line else f"{document.name}: "
    if exc.code == "too_large" and document is not None:   # what to do about it
        size = len(document.raw)
        size = f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"
        return (f"{document.name}: {exc.message} [{exc.code}]; the document is "
                f"{size}: split it into several (dynamo-inject "
                f"a.json b.json ... applies each as its own transaction), or raise "
                f"max_line_bytes ([daemon] of the daemon's configuration)")
    return f"{where}{exc.message} [{exc.code}]"


def print_result(result: dict, args, name: str | None = None):
    counts = {k: result.get(k, {}) for k in ("created", "updated", "deleted")}
    if args.as_json:
        print(json.dumps(counts if name is None else {"document": name, **counts}))
        return
    if name is not None:
        print(f"{name}:")
    if args.dry_run:
        print("dry run: nothing was changed; the request would give")
    print(format_counts(result))


def inject_documents(client: Client, method: str, args) -> int:
    """Send each document as its own request, at most IN_FLIGHT ahead of the answers,
    and report each; a refused document does not stop the others (exit code 1).  The
    next document is read and checked before waiting for an answer, so the daemon
    has it as soon as it can take it."""
    pending, answers, failed = [], {}, 0
    # each document's (name, names, applied), by its place in the command; what one lacked
    given, missing = [(None, {}, False)] * len(args.json), []

    def settle():
        nonlocal failed
        rid, document, at = pending[0]   # still unanswered if the connection fails here
        while rid not in answers:
            answer = client.receive()
            if "event" in answer:
                say_waiting(answer["event"])
                continue
            answers[answer.get("id")] = answer
            if answer.get("id") is None:  # the daemon refused the connection's input
                farewell.append(RemoteError(answer.get("error", {})))
                raise ConnectionFailed(answer.get("error", {}).get("message", "refused"))
        answer = answers.pop(rid)
        pending.pop(0)
        given[at] = (document.name, document.names, "error" not in answer)
        if "error" in answer:
            failed += 1
            error = RemoteError(answer["error"])
            print(f"dynamo-inject: {_located(error, document)}", file=sys.stderr)
            if error.code == "not_found" and "name" in error.details:
                missing.append((at, error.details.get("field"), error.details["name"]))
        elif closed:
            closed.append(document.name)
        else:
            try:
                print_result(answer["result"], args, document.name)
                sys.stdout.flush()
            except BrokenPipeError:   # `| head`: the rest is told on standard error
                output_closed()
                closed.append(document.name)

    def settle_farewell():
        answer = client.receive()
        if answer.get("id") is None:
            farewell.append(RemoteError(answer.get("error", {})))

    closed, sent, farewell, sending = [], 0, [], None
    try:
        for at, path in enumerate(args.json):
            try:
                document = read_document(path)
            except UsageError as exc:
                document = exc
            if len(pending) >= IN_FLIGHT:   # this one was read meanwhile
                settle()
            if closed:
                break
            if isinstance(document, UsageError):
                failed += 1
                print(f"dynamo-inject: {document}", file=sys.stderr)
                continue
            sending = (None, document, at)   # refused mid-send, it is not pending
            rid = client.send(method, {"data": document.data, "dry_run": args.dry_run})
            pending.append((rid, document, at))
            sent, sending = at + 1, None
        while pending:
            settle()
    except ConnectionFailed as exc:
        try:   # the answers it sent before it went are still to be read
            while pending:
                settle()
            if sending is not None:   # its refusal may be here still
                settle_farewell()
        except ConnectionFailed:
            pass
        unanswered = pending + ([sending] if sending is not None else [])
        if farewell and farewell[0].code == "too_large" and unanswered:
            _too_large(farewell[0], unanswered, args)
            return 1
        print(f"dynamo-inject: {exc}", file=sys.stderr)
        _untold([document.name for _, document, _ in pending], args.json[sent:], args)
        return 1
    if closed:
        print(f"dynamo-inject: standard output closed: stopped; "
              f"{'checked' if args.dry_run else 'applied'}, not reported there: "
              f"{' '.join(closed)}", file=sys.stderr)
        _untold([], args.json[sent:], args)
        return 1
    for line in [] if args.dry_run else _out_of_order(given, missing):   # nothing created
        print(f"dynamo-inject: {line}", file=sys.stderr)
    return 1 if failed else 0


def _too_large(refusal: RemoteError, unanswered: list, args):
    """The daemon refused a line over its limit and ended the connection, having answered
    every line before it: the first document still unanswered (`(rid, document, at)`)
    is that line; nothing after it was read, sent or not."""
    _, document, _ = unanswered[0]
    print(f"dynamo-inject: {_located(refusal, document)}", file=sys.stderr)
    left = [document.name for _, document, _ in unanswered[1:]] + args.json[
        unanswered[-1][2] + 1:]
    if left:
        print(f"dynamo-inject: not applied: {' '.join(left)} (the daemon reads nothing "
              f"after a document over its limit)", file=sys.stderr)


def _untold(unanswered: list, unsent: list, args):
    """After a stop: the documents whose answer never came (each applied whole or not at
    all: a dry run of them says which) and those never sent."""
    if unanswered and not args.dry_run:
        print(f"dynamo-inject: no answer came for {', '.join(unanswered)}: each was applied "
              f"whole or not at all (dynamo-inject --dry-run {' '.join(unanswered)} shows "
              f"what is left to do)", file=sys.stderr)
    if unsent:
        print(f"dynamo-inject: not sent: {' '.join(unsent)}", file=sys.stderr)


def _out_of_order(given: list, missing: list) -> list[str]:
    """What to say of a document refused for a site, group or dataset that a later one
    of the same command created (`dynamo-inject data.json sites.json`, or a glob that
    sorts them so): each is applied in the order given."""
    said = []
    for at, kind, name in missing:
        later = next((document for document, names, applied in given[at + 1:]
                      if applied and name in names.get(kind, ())), None)
        if later is not None:
            said.append(f"{given[at][0]}: the {kind} {name!r} is created by {later}, which "
                        f"comes after it (documents are applied in the order given): inject "
                        f"{given[at][0]} again now")
    return said


if __name__ == "__main__":
    sys.exit(main())
