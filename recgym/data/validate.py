"""Shared validators for raw dataset files.

Every check raises a `ValueError` that names the file, the 1-based line of the first offending record and the
field, so a user with a damaged or hand-edited file can go straight to the problem. Row-oriented checks take
``line_of``: the line number of row 0 (2 for a CSV with one header line, 1 for a header-less file), or an
explicit array mapping row -> line when rows were not read one per line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recgym.data._numeric import unique_sorted

PathLike = str | os.PathLike[str]


def malformed(file: PathLike, line: int | None, field: str | None, what: str) -> ValueError:
    """Build the standard error: ``<file>, line <n>, field <f>: <what>``."""
    where = str(file)
    if line is not None:
        where += f", line {line}"
    if field is not None:
        where += f", field {field!r}"
    return ValueError(f"malformed dataset file {where}: {what}")


def _py(x: Any) -> Any:
    """numpy scalar -> Python scalar, so messages read ``6`` rather than ``np.int64(6)``."""
    return x.item() if isinstance(x, np.generic) else x


def _line(line_of: int | np.ndarray, row: int) -> int:
    if isinstance(line_of, np.ndarray):
        return int(line_of[row])
    return int(line_of) + int(row)


def read_table(
    file: PathLike,
    columns: Sequence[str],
    *,
    sep: str = ",",
    header: bool = True,
    dtypes: dict[str, str] | None = None,
    usecols: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a delimited text file strictly: exact header (if any), field count, numeric fields parsed.

    Columns named in ``dtypes`` are parsed as numbers of that dtype (``int32``, ``float32``...); a value that
    does not parse raises an error naming the line and field. Other columns are read as strings (empty ->
    NaN). Only ``usecols`` (default: all) are returned.
    The fast path is one `pd.read_csv` call with the final dtypes (low memory on multi-GB logs); when it fails,
    the file is re-read as text to locate the first offending line and field. A C-speed count of separators
    per line catches rows with extra fields, which pandas can silently accept. Blank lines are skipped
    (row-based checks afterwards then report line numbers as if there were none). Empty float fields become NaN: callers that need values call `check_no_nan`. A multi-character
    ``sep`` (MovieLens ``::``) is supported without pandas' slow python engine.
    """
    path = Path(file)
    dtypes = dict(dtypes or {})
    cols = list(columns)
    use = list(usecols) if usecols is not None else cols
    if header:
        with open(path, encoding=encoding, errors="replace") as f:
            first_line = f.readline()
        if not first_line.strip():
            raise malformed(path, 1, None, f"file is empty or has no header; expected {cols}")
        got = [c.strip() for c in first_line.rstrip("\r\n").split(sep)]
        if got != cols:
            raise malformed(path, 1, None, f"header is {got}, expected {cols}")
    source: Any = path
    csv_sep = sep
    if len(sep) > 1:
        import io

        raw = path.read_bytes()
        if b"\x1f" in raw:
            _diagnose(path, cols, sep=sep, header=header, dtypes=dtypes, encoding=encoding)
        source, csv_sep = io.BytesIO(raw.replace(sep.encode(encoding), b"\x1f")), "\x1f"
    try:
        df = pd.read_csv(
            source,
            sep=csv_sep,
            encoding=encoding,
            quoting=3 if len(sep) > 1 else 0,
            header=0 if header else None,
            names=cols,
            usecols=use,
            dtype={c: dtypes.get(c, str) for c in use},
            engine="c",
        )
    except pd.errors.EmptyDataError as e:
        raise malformed(path, 1, None, "file is empty") from e
    except (ValueError, OverflowError, TypeError, pd.errors.ParserError) as e:
        _diagnose(path, cols, sep=sep, header=header, dtypes=dtypes, encoding=encoding)
        raise malformed(path, None, None, f"cannot parse ({e})") from e
    if not _field_counts_ok(path, sep, len(cols), header):
        # pandas silently tolerates extra fields in some configurations: find the offending line
        _diagnose(path, cols, sep=sep, header=header, dtypes=dtypes, encoding=encoding)
    return df[use]


def _field_counts_ok(path: Path, sep: str, n_cols: int, header: bool) -> bool:
    """Cheap check (one C-speed pass in chunks) that separators = (n_cols - 1) per non-header line.

    Returns True when it cannot tell (quoted fields, blank lines make the count differ: the slow
    `_diagnose` pass is then the judge).
    """
    n_sep = n_nl = 0
    last = b""
    s, nl = sep.encode(), b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 26):
            if b'"' in chunk:
                return True
            n_sep += chunk.count(s)
            n_nl += chunk.count(nl)
            last = chunk[-1:]
    n_lines = n_nl + (1 if last and last != nl else 0) - (1 if header else 0)
    header_seps = (n_cols - 1) if header else 0
    return n_sep - header_seps == (n_cols - 1) * n_lines


def _diagnose(
    path: Path, cols: list[str], *, sep: str, header: bool, dtypes: dict[str, str], encoding: str = "utf-8"
) -> None:
    """Re-read ``path`` as text to raise an error at the first bad line / field (slow path, bad files only)."""
    n = len(cols)
    lineno = 1 if header else 0
    with open(path, encoding=encoding, errors="replace") as f:
        if header:
            f.readline()
        for raw in f:
            lineno += 1
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            parts = _split(line, sep)
            if len(parts) != n:
                raise malformed(path, lineno, None, f"expected {n} fields, found {len(parts)}")
            for c, v in zip(cols, parts, strict=True):
                kind = dtypes.get(c)
                if kind is None:
                    continue
                v = v.strip()
                try:
                    x = float(v)
                except ValueError:
                    raise malformed(path, lineno, c, f"expected a number, got {v!r}") from None
                if kind.startswith(("int", "uint")):
                    if not np.isfinite(x) or x != int(x):
                        raise malformed(path, lineno, c, f"expected an integer, got {v!r}")
                    info = np.iinfo(kind)
                    if not info.min <= int(x) <= info.max:
                        raise malformed(path, lineno, c, f"integer {v!r} does not fit {kind}")


def _split(line: str, sep: str) -> list[str]:
    # CSV fields may be quoted (KuaiRand user features: "[100,1k)"): use the csv module for commas.
    if sep == "," and '"' in line:
        import csv

        return next(csv.reader([line]))
    return line.split(sep)


def check_no_nan(values: np.ndarray, file: PathLike, field: str, line_of: int | np.ndarray = 2) -> None:
    """Fail on the first NaN / inf value."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise malformed(file, _line(line_of, r), field, f"value {_py(values[r])!r} is not a finite number")


def check_range(
    values: np.ndarray,
    lo: float,
    hi: float,
    file: PathLike,
    field: str,
    line_of: int | np.ndarray = 2,
) -> None:
    """Fail on the first value outside ``[lo, hi]`` (NaN counts as outside)."""
    v = np.asarray(values)
    bad = ~((v >= lo) & (v <= hi))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise malformed(file, _line(line_of, r), field, f"value {_py(v[r])!r} is outside the valid range [{lo}, {hi}]")


def check_in_set(
    values: np.ndarray, allowed: Sequence[float], file: PathLike, field: str, line_of: int | np.ndarray = 2
) -> None:
    """Fail on the first value not in ``allowed`` (e.g. ratings 1..5, clicks 0/1)."""
    v = np.asarray(values)
    bad = ~np.isin(v, np.asarray(allowed))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise malformed(file, _line(line_of, r), field, f"value {_py(v[r])!r} is not one of {list(allowed)}")


def check_no_duplicates(
    users: np.ndarray,
    items: np.ndarray,
    file: PathLike,
    line_of: int | np.ndarray = 2,
    fields: tuple[str, str] = ("user", "item"),
) -> None:
    """Fail on the first (user, item) pair that already appeared earlier in the file."""
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    if len(u) == 0:
        return
    key = u * (int(i.max()) + 1) + i
    _, first_idx = unique_sorted(key, return_index=True)
    if len(first_idx) != len(key):
        seen = np.zeros(len(key), dtype=bool)
        seen[first_idx] = True
        r = int(np.flatnonzero(~seen)[0])
        prev = int(np.flatnonzero(key[:r] == key[r])[0])
        raise malformed(
            file,
            _line(line_of, r),
            f"{fields[0]},{fields[1]}",
            f"duplicate pair ({u[r]}, {i[r]}), first seen on line {_line(line_of, prev)}",
        )


def check_shape(arr: np.ndarray, expected: tuple[int, ...], file: PathLike, what: str = "array") -> None:
    """Fail when an array read from ``file`` does not have the expected shape."""
    if tuple(arr.shape) != tuple(expected):
        raise malformed(file, None, None, f"{what} has shape {tuple(arr.shape)}, expected {tuple(expected)}")


def read_dense_matrix(
    file: PathLike,
    *,
    n_cols: int | None = None,
    n_rows: int | None = None,
    dtype: str = "float64",
    integer: bool = False,
) -> np.ndarray:
    """Read a whitespace-separated dense matrix (Coat ``*.ascii``) line by line with exact error positions.

    Field names in errors are ``column <j>`` (1-based). Trailing blank lines are ignored.
    """
    path = Path(file)
    with open(path, encoding="utf-8", errors="strict") as f:
        text = f.read()
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise malformed(path, 1, None, "file is empty")
    rows: list[np.ndarray] = []
    width = n_cols
    for ln, line in enumerate(lines, start=1):
        parts = line.split()
        if width is None:
            width = len(parts)
        if len(parts) != width:
            raise malformed(path, ln, None, f"expected {width} values, found {len(parts)}")
        try:
            row = np.array(parts, dtype=np.float64)
        except ValueError:
            for j, p in enumerate(parts):
                try:
                    float(p)
                except ValueError:
                    raise malformed(path, ln, f"column {j + 1}", f"expected a number, got {p!r}") from None
            raise
        if not np.isfinite(row).all():
            j = int(np.flatnonzero(~np.isfinite(row))[0])
            raise malformed(path, ln, f"column {j + 1}", f"value {parts[j]!r} is not a finite number")
        if integer and (row != np.round(row)).any():
            j = int(np.flatnonzero(row != np.round(row))[0])
            raise malformed(path, ln, f"column {j + 1}", f"expected an integer, got {parts[j]!r}")
        rows.append(row)
    if n_rows is not None and len(rows) != n_rows:
        raise malformed(path, len(rows), None, f"found {len(rows)} rows, expected {n_rows}")
    return np.stack(rows).astype(dtype)


def check_matrix_values(
    mat: np.ndarray, allowed: Sequence[float], file: PathLike, what: str = "value"
) -> None:
    """Fail on the first matrix cell not in ``allowed``, naming its line (row + 1) and column."""
    bad = ~np.isin(mat, np.asarray(allowed))
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise malformed(file, r + 1, f"column {c + 1}", f"{what} {_py(mat[r, c])!r} is not one of {list(allowed)}")


def check_matrix_range(mat: np.ndarray, lo: float, hi: float, file: PathLike, what: str = "value") -> None:
    """Fail on the first matrix cell outside ``[lo, hi]``, naming its line (row + 1) and column."""
    bad = ~((mat >= lo) & (mat <= hi))
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise malformed(file, r + 1, f"column {c + 1}", f"{what} {_py(mat[r, c])!r} is outside [{lo}, {hi}]")
