"""`dynamo-site-usage`: used, projected and quota per (site, partition).

    dynamo-site-usage [--site GLOB] [--partition GLOB] [--json] [--bytes]
    dynamo-site-usage --set-quota SITE PARTITION SIZE    (SIZE: 500TB, 12000000, unlimited)
    dynamo-site-usage --partitions                       (the partitions and their conditions)

A table by default (sizes in powers of 1000: kB, MB, GB, TB, PB, as grid
storage is sold), one JSON object per line with --json (the `site_usage`
rows of PROTOCOL.md).
"""

import json
import math
import sys

from .arguments import Parser
from .connection import Client, ConnectionFailed, RemoteError, add_arguments, interruptible
from .table import format_table

UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
MAX_QUOTA = 2**63 - 1   # bytes: the daemon's integers
NONE_DEFINED = ("no partition is defined (the superuser defines partitions in the "
                "configuration's [partitions] or with the protocol's set_partition)")


def human(n: int) -> str:
    """165438 -> '165.4 kB' (powers of 1000)."""
    value, unit = float(n), 0
    while abs(value) >= 1000 and unit < len(UNITS) - 1:
        value, unit = value / 1000, unit + 1
    return f"{int(value)} B" if unit == 0 else f"{value:.1f} {UNITS[unit]}"


def parse_size(text: str) -> int | str:
    """'500TB', '1.5 PB', '12000' (bytes) or 'unlimited' -> what set_quota takes."""
    cleaned = text.strip().replace(" ", "")
    if cleaned.lower() == "unlimited":
        return "unlimited"
    for power, unit in reversed(list(enumerate(UNITS))):
        if power and cleaned.upper().endswith(unit.upper()):
            number, factor = cleaned[:-len(unit)], 1000 ** power
            break
    else:
        number, factor = cleaned.removesuffix("B").removesuffix("b"), 1
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):   # 'inf' included: no limit is said in words
        raise ValueError(f"not a size: {text!r} (say 500TB, 12000000 or unlimited)")
    if value < 0:
        raise ValueError(f"a quota is not negative: {text!r} (the original's negative quota, "
                         f"no limit, is 'unlimited' here)")
    if value * factor > MAX_QUOTA:
        raise ValueError(f"{text!r} is more than a quota holds ({human(MAX_QUOTA)} at most; "
                         f"no limit is 'unlimited')")
    return int(value * factor)


def _percent(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def format_usage(rows: list, exact: bool = False) -> str:
    size = str if exact else human
    table = [("SITE", "PARTITION", "USED", "PROJECTED", "QUOTA", "OCCUPANCY", "PROJ.OCC.",
              "REPLICAS", "INCOMPLETE")]
    for r in rows:
        quota = r["quota"]
        table.append((r["site"], r["partition"], size(r["used"]), size(r["projected"]),
                      quota if quota == "unlimited" else size(quota),
                      _percent(r["occupancy"]) if quota not in (0, "unlimited")
                      else ("full" if quota == 0 else "-"),   # 0: nothing may be placed
                      _percent(r["projected_occupancy"]),
                      str(r["complete_replicas"] + r["incomplete_replicas"]),
                      str(r["incomplete_replicas"])))
    return format_table(table)


def build_parser() -> Parser:
    parser = Parser(
        prog="dynamo-site-usage",
        description="Bytes used and projected, quota and occupancy per site and partition.",
        epilog="Examples:\n"
               "  dynamo-site-usage --site 'T2_*' --partition AnalysisOps\n"
               "  dynamo-site-usage --set-quota T2_US_XYZ AnalysisOps 500TB\n"
               "  dynamo-site-usage --partitions")
    parser.add_argument("-s", "--site", default="*", help="sites whose name matches this glob")
    parser.add_argument("-p", "--partition", default="*",
                        help="partitions whose name matches this glob")
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--bytes", action="store_true", help="sizes in bytes, not human units")
    parser.add_argument("--set-quota", nargs=3, metavar=("SITE", "PARTITION", "SIZE"),
                        help="set the quota of PARTITION at SITE (admin or operator on "
                             "inventory): 500TB, 12000000 (bytes), 0 (nothing may be placed: the "
                             "default) or unlimited")
    parser.add_argument("--partitions", action="store_true",
                        help="list the partitions and their conditions")
    add_arguments(parser)
    return parser


@interruptible("dynamo-site-usage")
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        quota = parse_size(args.set_quota[2]) if args.set_quota else None
    except ValueError as exc:
        parser.error(str(exc))
    try:
        with Client.from_args(args) as client:
            if args.set_quota:
                site, partition, _ = args.set_quota
                done = client.call("set_quota", site=site, partition=partition, quota=quota)
                print(f"quota of {partition} at {site}: " + (
                    done["quota"] if done["quota"] == "unlimited" else human(done["quota"])))
                return 0
            if args.partitions:
                partitions = client.call("list_partitions")["partitions"]
                for p in partitions:
                    shown = p.get("condition") or "[" + ", ".join(p["subpartitions"]) + "]"
                    print(f"{p['name']}: {shown} ({p['origin']})")
                if not partitions:
                    print(NONE_DEFINED, file=sys.stderr)
                return 0
            rows = client.call("site_usage", site=args.site, partition=args.partition)["usage"]
            why_none = None if rows or args.json else _why_no_rows(client, args)
    except (ConnectionFailed, RemoteError) as exc:
        print(f"dynamo-site-usage: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif rows:
        print(format_usage(rows, args.bytes))
    else:
        print(why_none, file=sys.stderr)
    return 0


def _why_no_rows(client, args) -> str:
    """Why no (site, partition) matched: there is a row for each pair of a matching site
    and a matching partition, so either no partition is defined, or no site or no
    partition matches its glob."""
    if not client.call("list_partitions")["partitions"]:
        return NONE_DEFINED
    if not client.call("list_sites", pattern=args.site)["sites"]:
        return f"no site matches {args.site!r}"
    return (f"no partition matches {args.partition!r} (dynamo-site-usage --partitions "
            f"lists them)")


if __name__ == "__main__":
    sys.exit(main())
