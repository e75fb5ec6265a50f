"""`application/x-www-form-urlencoded` bodies with PHP-style nested keys, as amoCRM/Kommo and Bitrix24 send.

`leads[status][0][id]=1&leads[status][0][custom_fields][0][values][0][value]=x` becomes
`{"leads": {"status": [{"id": "1", "custom_fields": [{"values": [{"value": "x"}]}]}]}}`. The rules are
PHP's (`main/php_variables.c`, `php_register_variable_ex`), because both CRMs are PHP applications that
build these bodies with `http_build_query` and their own handlers read them back as `$_POST`:

- `a[b][c]=v` nests; `a[]=v` appends (at the next integer index, as PHP does: one past the largest).
- A repeated key: the last value wins, as in PHP. amoCRM never repeats a key (each item and value has its
  explicit index: `custom_fields[0][values][1][value]`), so nothing it sends is lost by that.
- A container whose keys are all integers (`0`, `1`, `35144366`, not `05`) becomes a list, in the order
  the keys first appeared (PHP's iteration order); any other container is a dict with string keys. The
  top level is always a dict. Every leaf is a `str`.
- A scalar later given children becomes a container, and a container later given a scalar becomes that
  scalar (PHP again: the later assignment wins at each level).
- Malformed keys are read as PHP reads them, never refused: an unclosed first bracket is part of the name
  (`a[b=1` is the plain key `a_b`), text after a closing bracket that does not open another is ignored
  (`a[b]c=1` is `a[b]`), an unclosed later bracket ends the key there, and a key with an empty name
  (`=1`, `[a]=1`) is skipped. A pair without `=` has the empty value. Empty pairs (`&&`) are skipped.
- `+` is a space; `%XX` escapes are decoded to bytes, malformed escapes are kept as they are; the bytes are
  then decoded with the `charset` parameter of the Content-Type (UTF-8 by default; any ASCII-compatible
  codec Python knows, e.g. `windows-1251`/`cp1251`, `koi8-r`, `latin-1`). Bytes invalid in that charset
  become U+FFFD, so a mis-declared charset garbles a name but never loses an event's ids.

Limits (a body past one is a `FormError`, the only exception this module raises): at most
`MAX_BODY_BYTES` (1 MiB) of body, `MAX_FIELDS` (10,000) `&`-separated pairs and `MAX_DEPTH` (32) bracketed
levels in one key (amoCRM's deepest is 6: `leads[status][0][custom_fields][0][values][0][value]`). PHP's
own defaults are 1,000 pairs and 64 levels; amoCRM can send several leads with dozens of custom fields each,
so the pair limit is higher. A Content-Type other than this one (or none) is refused, as is a charset Python
does not know or one that is not ASCII-compatible (UTF-16/32: the `&`, `=` and `%` of a form cannot be
found in it).
"""

from __future__ import annotations

import codecs
import functools
import re
from typing import Any
from urllib.parse import unquote_to_bytes

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 1024 * 1024
MAX_FIELDS = 10_000
MAX_DEPTH = 32
_ASCII_PROBE = "&=[]%+;azAZ09_-."
_CHARSET_NAME = re.compile(r"[A-Za-z0-9._:-]{1,40}")
_CACHED_KEY_BYTES = 256
_MAX_INDEX_DIGITS = 18  # PHP turns a key into an integer only within a 64-bit long


class FormError(ValueError):
    """A body that cannot be read as a CRM form; the message says why (and never echoes a value)."""


Segment = tuple[str | None, int | None]  # a key segment (None: `[]`) and the integer PHP makes of it


class _Node(dict[str, Any]):
    """A container while the form is being built: PHP's next index for `a[]`, and whether every key so
    far is an integer (then it becomes a list)."""

    __slots__ = ("listlike", "next_index")

    def __init__(self) -> None:
        super().__init__()
        self.next_index = 0
        self.listlike = True

    def slot(self, segment: Segment) -> str:
        key, index = segment
        if key is None:
            index = self.next_index
            key = str(index)
        if index is None:
            self.listlike = False
        elif index >= self.next_index:
            self.next_index = index + 1
        return key


def parse_form(body: bytes, content_type: str | None = FORM_TYPE) -> dict[str, Any]:
    """The nested form of `body`; `content_type` is the request's Content-Type header (with its charset)."""
    if len(body) > MAX_BODY_BYTES:
        raise FormError(f"the body is larger than {MAX_BODY_BYTES} bytes")
    encoding = form_encoding(content_type)
    if body.count(b"&") >= MAX_FIELDS:
        raise FormError(f"the body has more than {MAX_FIELDS} fields")
    root = _Node()
    for pair in body.split(b"&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        path = (
            _cached_path(raw_key, encoding) if len(raw_key) <= _CACHED_KEY_BYTES else _path(raw_key, encoding)
        )
        if path is not None:
            _assign(root, path, _decode(raw_value, encoding))
    return {key: _finish(value) for key, value in root.items()}


def form_encoding(content_type: str | None) -> str:
    """The codec of a form body with this Content-Type: its charset parameter, UTF-8 when it has none."""
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    if media_type != FORM_TYPE:
        shown = repr(media_type[:80]) if media_type else "none"
        raise FormError(f"the Content-Type must be {FORM_TYPE}, got {shown}")
    charset = "utf-8"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").strip().lower() or charset
    return _codec(charset[:64])


@functools.lru_cache(maxsize=64)
def _codec(charset: str) -> str:
    plain = _CHARSET_NAME.fullmatch(charset) is not None
    shown = repr(charset) if plain else "given"
    try:
        if not plain:
            raise LookupError(charset)
        info = codecs.lookup(charset)
    except LookupError:
        raise FormError(f"the charset {shown} is unknown") from None
    if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13: codecs but not charsets
        raise FormError(f"the charset {shown} is unknown")
    try:
        compatible = _ASCII_PROBE.encode(info.name) == _ASCII_PROBE.encode("ascii")
    except UnicodeError:
        compatible = False
    if not compatible:
        raise FormError(f"the charset {shown} is not ASCII-compatible, so it cannot carry a form body")
    return info.name


def _decode(raw: bytes, encoding: str) -> str:
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return raw.decode(encoding, "replace")


def _path(raw_key: bytes, encoding: str) -> tuple[Segment, ...] | None:
    """The base name and bracketed segments of a key, or None for a key PHP would drop."""
    key = _decode(raw_key, encoding).lstrip(" ")
    start = key.find("[")
    if start == -1:
        return ((key, None),) if key else None
    if key.find("]", start + 1) == -1:  # an unclosed first bracket is part of the name
        name = key[:start] + "_" + key[start + 1 :]
        return ((name, None),) if start else None
    if not start:
        return None
    path: list[Segment] = [(key[:start], None)]
    at = start
    while at < len(key) and key[at] == "[":
        end = key.find("]", at + 1)
        if end == -1:
            break
        if len(path) > MAX_DEPTH:
            raise FormError(f"a key nests deeper than {MAX_DEPTH} levels")
        segment = key[at + 1 : end]
        path.append((segment, _index(segment)) if segment else (None, None))
        at = end + 1
    return tuple(path)


# the keys of a CRM's bodies repeat from request to request; long (rare) keys are not kept
_cached_path = functools.lru_cache(maxsize=4096)(_path)


def _index(segment: str) -> int | None:
    """The integer PHP would make of a key segment, or None for a string key."""
    if (
        segment.isdigit()
        and segment.isascii()
        and len(segment) <= _MAX_INDEX_DIGITS
        and (segment == "0" or segment[0] != "0")
    ):
        return int(segment)
    return None


def _assign(root: _Node, path: tuple[Segment, ...], value: str) -> None:
    node = root
    for segment in path[:-1]:
        key = node.slot(segment)
        child = node.get(key)
        if not isinstance(child, _Node):
            child = node[key] = _Node()
        node = child
    node[node.slot(path[-1])] = value


def _finish(value: Any) -> Any:
    if not isinstance(value, _Node):
        return value
    if value.listlike:
        return [_finish(item) for item in value.values()]
    return {key: _finish(item) for key, item in value.items()}
