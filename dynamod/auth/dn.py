"""Distinguished names as the grid writes them.

The identity is the end-entity's subject in the slash form of OpenSSL's
X509_NAME_oneline (what voms-proxy-info, grid-proxy-info and `openssl x509
-nameopt compat` show): `/DC=ch/DC=cern/OU=Users/CN=...`, the attributes of a
multi-valued RDN joined by `+`, a `/` or `+` inside a value escaped as `\\/`
and `\\+`, control characters as `\\xHH`.  A backslash in a value is doubled
(OpenSSL leaves it, which makes its `\\/` ambiguous), so no two names render
alike: neither `OU=Users/CN=Jane Doe` as one value nor `OU=Users + CN=Jane Doe`
as one RDN reads as `/OU=Users/CN=Jane Doe`.  Characters beyond ASCII stay as
they are (OpenSSL shows their UTF-8 bytes as `\\xHH`).

A DN given in comma form (RFC 4514, or openssl's `oneline`) is taken in that form too
(`normalize_dn`).  Nothing here needs the X.509 library: the daemon loads it only
when a CA directory is configured or a client authenticates (x509.py).
"""

import re


def escape(value: str) -> str:
    """An attribute's value as slash form writes it."""
    return re.sub(r"[/+\\\x00-\x1f\x7f]", lambda m: "\\" + m[0] if m[0] in "/+\\"
                  else f"\\x{ord(m[0]):02X}", value)


_COMMA_FORM_PART = re.compile(r"((?:[^\\,+]|\\.)*)([,+]|$)", re.S)
_GENERALITY = {"C": 0, "DC": 0, "O": 1, "OU": 2, "L": 2, "ST": 2}  # others (CN, UID...): 3


def normalize_dn(dn: str) -> str:
    """Accept a DN in slash form, or in comma form (RFC 4514, most specific first; or
    openssl's `oneline`, most general first: told apart by the attribute types at its
    two ends), as slash form."""
    dn = dn.strip()
    if dn.startswith("/"):
        return dn
    rdns, attributes, position = [], [], 0
    while True:
        match = _COMMA_FORM_PART.match(dn, position)
        key, equals, value = match[1].partition("=")
        if not equals or not key.strip():
            raise ValueError(f"not a distinguished name: {dn!r}")
        attributes.append(f"{key.strip()}={escape(_unescape(value.strip()))}")
        if match[2] != "+":
            rdns.append("+".join(attributes))
            attributes = []
        if not match[2]:
            break
        position = match.end()
    first, last = (_GENERALITY.get(r.split("=", 1)[0].upper(), 3) for r in (rdns[0], rdns[-1]))
    if first >= last:   # most specific first, as RFC 4514 has it (when in doubt too)
        rdns.reverse()
    return "/" + "/".join(rdns)


def _unescape(value: str) -> str:
    """An RFC 4514 attribute value without its escapes (`\\,`, `\\+`, `\\C3\\A9`...)."""
    return re.sub(rb"\\([0-9A-Fa-f]{2})|\\(.)", lambda m: bytes.fromhex(m[1].decode())
                  if m[1] else m[2], value.encode(), flags=re.S).decode()
