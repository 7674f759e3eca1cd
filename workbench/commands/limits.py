"""What any command must be before its fields are looked at: plain, finite, small JSON.

A command is data from anywhere — an editor, a file, a colleague's run record — so it is
checked as untrusted input *before* pydantic sees it, in one linear pass that cannot recurse:

- text is at most :data:`MAX_BYTES` (a 10 MB command is refused in microseconds, not parsed);
- values nest at most :data:`MAX_DEPTH` levels and hold at most :data:`MAX_NODES` values
  (no ``RecursionError``, no minutes spent collecting errors of a million-item list);
- every number is finite (``NaN``, ``Infinity``, ``1e400`` are refused wherever they appear:
  an optimizer's ``lr``, a rotation angle, a clip value) and every integer fits in 64 bits;
- strings are at most :data:`MAX_STRING` characters; a key given twice in JSON text is refused
  (Python would silently keep the last one).

Each problem is a :class:`~workbench.registry.ConfigError` naming the field path.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..registry import ConfigError, join_path, show

MAX_BYTES = 1 << 20          #: largest command text (1 MiB; real commands are a few KB)
MAX_DEPTH = 24               #: deepest nesting (a layer's list parameter is 5 levels down)
MAX_NODES = 50_000           #: most values in one command
MAX_STRING = 4096            #: longest string (a path or a name)
MAX_INT = 2 ** 63 - 1        #: integers beyond int64 overflow every torch constructor
_SHOWN_PARTS = 8             #: path parts shown for a value nested too deep


class _Pairs(dict):
    """A JSON object read from text that had a key twice (the keys are kept for the message)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        dupes = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        out = _Pairs(out)
        out.duplicates = dupes
    return out


def read_json(text: str) -> Any:
    """JSON text → value; too big, too deep or malformed text is a :class:`ConfigError`.

    The size is checked before parsing; numbers and nesting are checked by :func:`check_plain`.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError("", f"the command is {len(text):,} characters; a training command is at most"
                          f" {MAX_BYTES:,} (is this the right file?)", f"{len(text):,} characters")
    try:
        value = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError("", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                          text[:80]) from None
    except RecursionError:
        raise ConfigError("", f"values nest deeper than {MAX_DEPTH} levels", text[:80]) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError("", f"not a usable JSON value: {exc}", text[:80]) from None
    check_plain(value)
    return value


def read_command_file(path: str | Path) -> Any:
    """The JSON value in a command file, read at most :data:`MAX_BYTES` + 1 bytes.

    A path that is not a regular file (a folder, ``/dev/zero``, a FIFO) is refused before it is
    read; the size is checked on what was read, not on ``stat`` (a file that grows meanwhile, a
    ``/proc`` file that says 0 bytes).
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError:
        raise ConfigError("", f"no command file {str(p)!r}", str(p)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("", f"{str(p)!r} is not a regular file (a training command is a JSON file)", str(p))
    with open(p, "rb", opener=lambda f, flags: os.open(f, flags | os.O_NONBLOCK)) as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ConfigError("", f"{p}: more than {MAX_BYTES:,} bytes; a training command is at most {MAX_BYTES:,}",
                          str(p))
    try:
        return read_json(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})", str(p)) from None
    except ConfigError as exc:
        raise ConfigError.collect([ConfigError(e.path, f"{p}: {e.reason}" if not e.path else e.reason, e.value,
                                               e.allowed, e.suggestions) for e in exc.problems]) from None


def _walk(value: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``(location, value)`` of every value, depth-first, without recursion; stops at the limits."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    count = 0
    while stack:
        loc, v = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError("", f"the command holds more than {MAX_NODES:,} values; a training command is"
                              " far smaller", f"> {MAX_NODES:,} values")
        yield loc, v
        if isinstance(v, (Mapping, list, tuple)):
            if len(loc) >= MAX_DEPTH:
                shown = loc[:_SHOWN_PARTS]
                raise ConfigError(_path(shown), f"values nest deeper than {MAX_DEPTH} levels"
                                  + (f" (below {_path(shown)}…)" if len(loc) > len(shown) else ""),
                                  f"depth > {MAX_DEPTH}")
            if len(v) > MAX_NODES:  # before building anything of its size
                raise ConfigError(_path(loc), f"{len(v):,} values in one list or object; a training"
                                  " command is far smaller", f"{len(v):,} values")
            items = list(v.items()) if isinstance(v, Mapping) else list(enumerate(v))
            stack.extend((loc + (k,), x) for k, x in reversed(items))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out = join_path(out, f"[{part}]" if isinstance(part, int) else str(part))
    return out


def check_plain(value: Any) -> None:
    """Refuse non-finite numbers, huge integers, long strings, duplicate keys, deep or huge values.

    Every problem found is reported at once (one :class:`ConfigError`), each under its field path.
    """
    problems: list[ConfigError] = []
    for loc, v in _walk(value):
        where = _path(loc)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            problems.append(ConfigError(where, f"expected a finite number, got {v!r} (NaN and infinities"
                                        " train on garbage or fail mid-run)", v))
        elif isinstance(v, int) and abs(v) > MAX_INT:
            problems.append(ConfigError(where, f"integer {show(v)[:40]} does not fit in 64 bits", "huge integer"))
        elif isinstance(v, str) and len(v) > MAX_STRING:
            problems.append(ConfigError(where, f"a string of {len(v):,} characters; at most {MAX_STRING:,}",
                                        v[:40] + "…"))
        elif isinstance(v, Mapping):
            for k in getattr(v, "duplicates", ()):
                problems.append(ConfigError(join_path(where, str(k)), "given twice in the JSON text (only one"
                                            " value can count)", k))
            bad = [k for k in v if not isinstance(k, str)]
            if bad:
                problems.append(ConfigError(where, f"field names must be strings, got {show(bad[0])}", bad[0]))
    if problems:
        raise ConfigError.collect(problems)


def _scalar(o: Any) -> Any:
    """A value JSON cannot hold: a numpy/torch scalar as its number, anything else (a ``Path``) as text."""
    item = getattr(o, "item", None)
    if callable(item) and getattr(o, "shape", None) == ():
        return item()
    return str(o)


def plain(d: Mapping[str, Any]) -> dict[str, Any]:
    """A checked, JSON-plain copy of a command dict (:func:`check_plain`, a JSON round trip, checked again).

    Values JSON cannot hold become what the run record stores: a numpy scalar its number (so a
    ``np.float32("nan")`` is refused like any NaN), a ``Path`` its text.
    """
    check_plain(d)  # first: a deep or huge value never reaches json.dumps
    try:
        out = json.loads(json.dumps(dict(d), default=_scalar))
    except (TypeError, ValueError) as exc:
        raise ConfigError("", f"not a JSON-like command: {exc}", type(d).__name__) from None
    check_plain(out)
    return out
