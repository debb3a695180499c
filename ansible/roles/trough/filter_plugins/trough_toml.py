"""The `trough_toml` filter: a mapping as a TOML document (what `trough --config` reads).

Scalars and arrays of a table come first, then its sub-tables as [a.b] sections; arrays of
mappings become arrays of inline tables. None values are left out (TOML has no null), which
means "use trough's default".
"""

import math
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"',
            "\\": "\\\\"}


def _string(s):
    out = []
    for ch in str(s):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k):
    k = str(k)
    return k if _BARE_KEY.match(k) else _string(k)


def _value(v, where):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise AnsibleFilterError(f"trough_toml: {where} is not a finite number")
        return repr(float(v))
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, Mapping):
        items = [f"{_key(k)} = {_value(x, f'{where}.{k}')}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    raise AnsibleFilterError(f"trough_toml: {where} has a type TOML cannot hold: {type(v).__name__}")


def trough_toml(data):
    if not isinstance(data, Mapping):
        raise AnsibleFilterError("trough_toml: expects a mapping")
    lines = []

    def table(path, d):
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in d.items() if isinstance(v, Mapping)]
        if path and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v, '.'.join(map(str, path + [k])))}")
        for k, v in tables:
            table(path + [k], v)

    table([], data)
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self):
        return {"trough_toml": trough_toml}
