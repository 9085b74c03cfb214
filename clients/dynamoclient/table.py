"""Plain-text tables for the clients' listings: left-aligned columns, two spaces apart."""


def format_table(rows: list) -> str:
    """`rows` of strings, the header first."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in rows)
