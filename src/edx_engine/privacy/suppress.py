"""Small-cell suppression for published tables.

A published count below ``k`` (default 5) could single out a person. Hiding the cell is not
enough when the table (or another published one) also gives its total: the hidden value is
then ``total - the other cells``. Two tools:

``protect`` (used by ``suppress``, ``suppress_crosstab``, ``suppress_course_breakdown``)
    cell suppression with complementary suppression. Cells are counts; *equations* say that a
    total equals the sum of its parts (a published total cell, or a total known from elsewhere).
    1. primary: every cell with ``0 < value < k`` is hidden;
    2. complementary: in every equation with hidden cells, at least two cells must be hidden,
       and when the total is published the hidden parts (whose sum the reader then knows) must
       add up to ``>= k``; otherwise the smallest visible part (else the total) of the equation
       is hidden too (repeated until stable);
    3. linear-algebra check: a hidden cell must not be determined by *all* published cells
       and equations together (a hidden cell is determined exactly when every vector of the
       null space of the hidden-cell system is 0 in that cell); any determined cell gets one
       more complementary suppression, and steps 2-3 repeat.
    The result: no hidden cell can be recomputed by adding and subtracting published numbers.

``merge_small``
    recoding for one-dimensional breakdowns: categories below ``k`` are merged into
    ``"other"``; if "other" is still below ``k`` the next-smallest categories join it; if the
    whole group is below ``k`` its "other" cell is hidden. Every published number is then 0 or
    ``>= k`` and "other" always pools at least two categories. Only safe when the groups are
    independent (no published total across groups); use ``suppress_crosstab`` otherwise.

Hidden cells become NULL and the row's ``suppressed`` column names them, so a reader can tell
a suppressed cell from a missing value. Zero cells are published (``zero_is_safe``): a 0 says
nobody, not who.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa

from ..age import age_band

DEFAULT_K = 5
OTHER = "other"
SUPPRESSED_COLUMN = "suppressed"


@dataclass
class Protection:
    hidden: set[int]
    primary: set[int]
    unprotectable: list[int] = field(default_factory=list)  # cells whose equations are all known otherwise


def protect(values: Sequence[int | None], equations: Sequence[Sequence[int]], k: int = DEFAULT_K,
            fixed: Sequence[int] = (), zero_is_safe: bool = True, forced: Sequence[int] = (),
            not_counts: Sequence[int] = ()) -> Protection:
    """Cells to hide. ``equations``: ``[total, part1, part2, ...]`` index lists meaning
    ``values[total] == sum(values[parts])``. ``fixed`` cells are known to every reader (e.g. a total
    published in another report): they are never hidden and never count as unknowns.
    ``not_counts`` are not counts of people (posts, events): no small-cell rule of their own;
    ``forced`` cells are hidden whatever their value (they would reveal a hidden count of people)."""
    vals = [int(v) if v is not None else 0 for v in values]
    fixed_set = set(fixed)
    known_missing = {i for i, v in enumerate(values) if v is None}
    lo = 0 if zero_is_safe else -1
    exempt = set(not_counts)
    primary = {i for i, v in enumerate(vals) if lo < v < k and i not in fixed_set and i not in known_missing
               and i not in exempt}
    primary |= {i for i in forced if i not in fixed_set and i not in known_missing}
    hidden = set(primary)
    unprotectable: list[int] = []
    eqs = [list(dict.fromkeys(e)) for e in equations if len(e) >= 2]
    by_cell: dict[int, list[int]] = defaultdict(list)
    for n, e in enumerate(eqs):
        for c in e:
            by_cell[c].append(n)

    def candidates(e: list[int]) -> list[int]:
        cs = [c for c in e if c not in hidden and c not in fixed_set and c not in known_missing]
        # prefer parts over the total, non-zero over zero, then the smallest value
        return sorted(cs, key=lambda c: (c == e[0], vals[c] == 0, vals[c], c))

    def complete_equations() -> None:
        changed = True
        while changed:
            changed = False
            for e in eqs:
                h = [c for c in e if c in hidden]
                if not h or not _weak(e, h, vals, k):
                    continue
                cs = candidates(e)
                if not cs:
                    if len(h) == 1:
                        unprotectable.extend(x for x in h if x not in unprotectable)
                    continue
                hidden.add(cs[0])
                changed = True

    for _ in range(len(vals) + 1):
        complete_equations()
        det = determined(vals, eqs, hidden)
        det = [c for c in det if c not in unprotectable]
        if not det:
            break
        added = False
        for c in det:
            for n in by_cell.get(c, []):
                cs = candidates(eqs[n])
                if cs:
                    hidden.add(cs[0])
                    added = True
                    break
            if added:
                break
        if not added:
            unprotectable.extend(det)
            break
    return Protection(hidden, primary, unprotectable)


def _weak(e: Sequence[int], h: list[int], vals: list[int], k: int) -> bool:
    """An equation with hidden cells ``h`` gives too much away: a single hidden cell is recovered
    by subtraction; with the total published, the hidden parts' sum is published too, so it must
    be ``>= k`` (else the reader knows every hidden part is below k... and small)."""
    if len(h) == 1:
        return True
    return e[0] not in h and sum(vals[c] for c in h) < k


def determined(values: Sequence[int], equations: Sequence[Sequence[int]], hidden: set[int]) -> list[int]:
    """Hidden cells that the published cells and the equations determine exactly.

    A hidden cell is determined when its unit vector lies in the row space of the equations
    written over the hidden cells (the published ones are constants). The system falls apart into
    independent pieces (e.g. one per course of a report): each is solved on its own, so the cost
    follows the largest piece, not the whole table (200 courses' breakdowns at once were one SVD
    of some 10,000 unknowns: 340 s and 4 GB)."""
    unknown = sorted(hidden)
    if not unknown:
        return []
    col = {c: j for j, c in enumerate(unknown)}
    rows = [[c for c in e if c in col] for e in equations]
    rows_of: list[tuple[list[int], Sequence[int]]] = [(r, e) for r, e in zip(rows, equations) if r]
    if not rows_of:
        return []
    parent = list(range(len(unknown)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r, _ in rows_of:
        a = find(col[r[0]])
        for c in r[1:]:
            b = find(col[c])
            if a != b:
                parent[b] = a
    pieces: dict[int, list[tuple[list[int], Sequence[int]]]] = defaultdict(list)
    for r, e in rows_of:
        pieces[find(col[r[0]])].append((r, e))
    out: list[int] = []
    for piece in pieces.values():
        cells = sorted({c for r, _ in piece for c in r})
        pos = {c: j for j, c in enumerate(cells)}
        a = np.zeros((len(piece), len(cells)))
        for i, (_, e) in enumerate(piece):
            for k, c in enumerate(e):
                if c in pos:
                    a[i, pos[c]] += 1.0 if k == 0 else -1.0
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        rank = int((s > 1e-9 * max(1.0, s.max())).sum()) if s.size else 0
        # e_j in the row space  <=>  its projection on the row space (the first rank rows of vt) has length 1
        reach = (vt[:rank] ** 2).sum(axis=0)
        out += [cells[j] for j in range(len(cells)) if reach[j] > 1 - 1e-9]
    return sorted(out)


# -- tables -------------------------------------------------------------------------------------------

def _apply(table: pa.Table, cells: list[tuple[int, str]], hidden: set[int], count_columns: list[str]) -> pa.Table:
    """Null the hidden cells ((row, column) pairs) and add the `suppressed` column."""
    hide_at: dict[str, set[int]] = defaultdict(set)
    per_row: dict[int, list[str]] = defaultdict(list)
    for i in sorted(hidden):
        r, c = cells[i]
        hide_at[c].add(r)
        per_row[r].append(c)
    out = table
    for c in count_columns:
        if not hide_at.get(c):
            continue
        vals = out.column(c).to_pylist()
        for r in hide_at[c]:
            vals[r] = None
        out = out.set_column(out.schema.get_field_index(c), c, pa.array(vals, out.schema.field(c).type))
    sup = pa.array([";".join(per_row[r]) if r in per_row else None for r in range(out.num_rows)], pa.string())
    if SUPPRESSED_COLUMN in out.column_names:
        out = out.set_column(out.schema.get_field_index(SUPPRESSED_COLUMN), SUPPRESSED_COLUMN, sup)
    else:
        out = out.append_column(SUPPRESSED_COLUMN, sup)
    return out


def _groups(table: pa.Table, by: Sequence[str]) -> dict[tuple, list[int]]:
    g: dict[tuple, list[int]] = defaultdict(list)
    keys = [table.column(b).to_pylist() for b in by]
    for r in range(table.num_rows):
        g[tuple(k[r] for k in keys)].append(r)
    return g


def suppress(table: pa.Table, count_columns: Sequence[str] | str, k: int = DEFAULT_K, *,
             by: Sequence[str] = (), row_sums: Sequence[tuple[str, Sequence[str]]] = (),
             column_totals: bool = True, linked: dict[str, Sequence[str]] | None = None) -> pa.Table:
    """Suppress small counts in a wide table (one row per entity, one column per count).

    ``row_sums``: ``[("total", ["male", "female", "other_unknown"]), ...]`` additive relations
    inside each row. ``column_totals``: the sum of each count column (per ``by`` group, or over
    the whole table) is treated as known to the reader (safe default: it usually is published
    somewhere). ``linked``: ``{"authors": ["posts", ...]}``: columns that are not counts of people
    but bound one (1 post means 1 author); they are hidden, with complements, in every row
    whose people count is hidden as too small. Returns the table with hidden cells NULL and a
    ``suppressed`` column.
    """
    linked = linked or {}
    cols = [count_columns] if isinstance(count_columns, str) else list(count_columns)
    cols += [c for ls in linked.values() for c in ls if c not in cols and c in table.column_names]
    cells: list[tuple[int, str]] = []
    values: list[int | None] = []
    index: dict[tuple[int, str], int] = {}
    data = {c: table.column(c).to_pylist() for c in cols}
    for r in range(table.num_rows):
        for c in cols:
            index[(r, c)] = len(cells)
            cells.append((r, c))
            values.append(data[c][r])
    eqs: list[list[int]] = []
    fixed: list[int] = []
    for r in range(table.num_rows):
        for total, parts in row_sums:
            eqs.append([index[(r, total)]] + [index[(r, p)] for p in parts])
    if column_totals:
        for _, rows in _groups(table, by).items():
            for c in cols:
                t = len(values)
                values.append(sum(data[c][r] or 0 for r in rows))
                fixed.append(t)
                eqs.append([t] + [index[(r, c)] for r in rows])
    not_counts = [index[(r, c)] for ls in linked.values() for c in ls if c in data for r in range(table.num_rows)]
    forced = [index[(r, c)] for p, ls in linked.items() if p in data for r in range(table.num_rows)
              if 0 < (data[p][r] or 0) < k for c in ls if c in data]
    hidden = protect(values, eqs, k, fixed=fixed, forced=forced, not_counts=not_counts).hidden
    return _apply(table, cells, {h for h in hidden if h < len(cells)}, cols)


def suppress_crosstab(table: pa.Table, row_key: str, col_key: str, count: str, k: int = DEFAULT_K, *,
                      by: Sequence[str] = (), total_label: str | None = None,
                      row_totals_known: bool = True, col_totals_known: bool = True) -> pa.Table:
    """Suppress small counts in a long two-way table (``by`` groups x ``row_key`` x ``col_key``).

    Within each ``by`` group, row totals (sum over ``col_key``) and column totals (sum over
    ``row_key``) are known to the reader: either because the table holds them (rows whose
    ``row_key`` or ``col_key`` equals ``total_label``; these cells can be hidden too) or, with
    ``*_totals_known``, because they are published elsewhere. Absent combinations count as
    published zeros.
    """
    cells = [(r, count) for r in range(table.num_rows)]
    values: list[int | None] = table.column(count).to_pylist()
    values = list(values)
    rk, ck = table.column(row_key).to_pylist(), table.column(col_key).to_pylist()
    eqs: list[list[int]] = []
    fixed: list[int] = []
    for _, rows in _groups(table, by).items():
        grid: dict[tuple, int] = {(rk[r], ck[r]): r for r in rows}
        rvals = sorted({rk[r] for r in rows if rk[r] != total_label or total_label is None}, key=str)
        cvals = sorted({ck[r] for r in rows if ck[r] != total_label or total_label is None}, key=str)

        def margin(cells_: list[int], explicit: int | None, known: bool) -> list[int] | None:
            if explicit is not None:
                return [explicit] + cells_
            if known:
                t = len(values)
                values.append(sum(values[c] or 0 for c in cells_))
                fixed.append(t)
                return [t] + cells_
            return None

        for rv in rvals:
            parts = [grid[(rv, cv)] for cv in cvals if (rv, cv) in grid]
            e = margin(parts, grid.get((rv, total_label)) if total_label is not None else None, row_totals_known)
            if e:
                eqs.append(e)
        for cv in cvals:
            parts = [grid[(rv, cv)] for rv in rvals if (rv, cv) in grid]
            e = margin(parts, grid.get((total_label, cv)) if total_label is not None else None, col_totals_known)
            if e:
                eqs.append(e)
        if total_label is not None:  # margins add up to the grand total
            row_m = [grid[(rv, total_label)] for rv in rvals if (rv, total_label) in grid]
            col_m = [grid[(total_label, cv)] for cv in cvals if (total_label, cv) in grid]
            grand = grid.get((total_label, total_label))
            for m in (row_m, col_m):
                if m:
                    e = margin(m, grand, row_totals_known and col_totals_known)
                    if e:
                        eqs.append(e)
    hidden = protect(values, eqs, k, fixed=fixed).hidden
    return _apply(table, cells, {h for h in hidden if h < len(cells)}, [count])


def merge_small(table: pa.Table, category: str, count_columns: Sequence[str] | str, k: int = DEFAULT_K, *,
                by: Sequence[str] = (), other: str = OTHER) -> pa.Table:
    """Merge categories whose (first) count is below ``k`` into ``other``, per ``by`` group.

    The first count column decides; further count columns are summed alongside. Output rows:
    the kept categories (in input order) then the group's ``other`` row; an ``other`` below
    ``k`` (the whole group is small) is published as NULL and flagged in ``suppressed``.
    """
    cols = [count_columns] if isinstance(count_columns, str) else list(count_columns)
    main = cols[0]
    data = table.to_pylist()
    out_rows: list[dict] = []
    for key, rows in _groups(table, by).items():
        items = [data[r] for r in rows]
        small = [x for x in items if (x[main] or 0) < k and (x[main] or 0) > 0 or x[category] == other]
        rest = sorted((x for x in items if x not in small), key=lambda x: (x[main] or 0, str(x[category])))
        if small:
            total = sum(x[main] or 0 for x in small)
            while (total < k or len(small) < 2) and rest:
                x = rest.pop(0)
                small.append(x)
                total += x[main] or 0
        kept = [x for x in items if x not in small]
        out_rows.extend(dict(x, **{SUPPRESSED_COLUMN: None}) for x in kept)
        if small:
            row = dict(small[0])
            row[category] = other
            for c in cols:
                row[c] = sum(x[c] or 0 for x in small)
            if row[main] < k:
                for c in cols:
                    row[c] = None
                row[SUPPRESSED_COLUMN] = ";".join(cols)
            else:
                row[SUPPRESSED_COLUMN] = None
            out_rows.append(row)
    schema = table.schema
    if SUPPRESSED_COLUMN not in schema.names:
        schema = schema.append(pa.field(SUPPRESSED_COLUMN, pa.string()))
    return pa.Table.from_pylist(out_rows, schema=schema)


# -- the course report's breakdown -------------------------------------------------------------------

def suppress_course_breakdown(table: pa.Table, k: int = DEFAULT_K, all_label: str = "(all)",
                              known_course_totals: dict[str, int] | None = None) -> pa.Table:
    """``course_breakdown`` (course_id, country, dimension, value, learners): per course, the
    learners by gender / education / year of birth, overall (country = "(all)") and per
    country, plus learners per country (dimension "country"). One system of equations per
    course links them all: for each dimension d and value v, (all, d, v) = sum over countries
    of (c, d, v); for each country c, (all, country, c) = sum over v of (c, d, v); and the
    course's learner total (``known_course_totals``, else the sum) = sum of every breakdown.

    The course's age bands (``age.age_band`` of the overall years of birth), which the public
    dashboard publishes, are cells of the same system: a band is the sum of its years, so the
    two outputs together give back no hidden cell (:func:`suppress_course_breakdown_and_ages`).
    """
    return suppress_course_breakdown_and_ages(table, k, all_label, known_course_totals)[0]


def suppress_course_breakdown_and_ages(table: pa.Table, k: int = DEFAULT_K, all_label: str = "(all)",
                                       known_course_totals: dict[str, int] | None = None,
                                       year: int | None = None) -> tuple[pa.Table, pa.Table]:
    """:func:`suppress_course_breakdown`, and the course age bands (course_id, age_band, learners;
    NULL: hidden) that the same suppression protects."""
    course = table.column("course_id").to_pylist()
    country = table.column("country").to_pylist()
    dim = table.column("dimension").to_pylist()
    val = table.column("value").to_pylist()
    values: list[int | None] = list(table.column("learners").to_pylist())
    cells = [(r, "learners") for r in range(table.num_rows)]
    eqs: list[list[int]] = []
    fixed: list[int] = []
    per_course: dict[str, list[int]] = defaultdict(list)
    bands: list[tuple[str, str, int]] = []  # (course, band, cell)
    for r in range(table.num_rows):
        per_course[course[r]].append(r)
    for cid, rows in per_course.items():
        idx = {(country[r], dim[r], val[r]): r for r in rows}
        dims = sorted({dim[r] for r in rows})
        countries = sorted({country[r] for r in rows if country[r] != all_label}, key=str)
        if known_course_totals and cid in known_course_totals:
            total = known_course_totals[cid]
        else:
            total = sum(values[r] or 0 for r in rows if country[r] == all_label and dim[r] == "country")
        t = len(values)
        values.append(total)
        fixed.append(t)
        by_band: dict[str, list[int]] = defaultdict(list)  # band -> the overall year-of-birth cells in it
        for r in rows:
            if country[r] == all_label and dim[r] == "year_of_birth":
                by_band[age_band(val[r], year)].append(r)
        for band, parts in sorted(by_band.items()):
            bands.append((cid, band, len(values)))
            values.append(sum(values[r] or 0 for r in parts))
            eqs.append([len(values) - 1] + parts)
        for d in dims:
            overall = [idx[(all_label, d, v)] for v in sorted({val[r] for r in rows if dim[r] == d}, key=str)
                       if (all_label, d, v) in idx]
            if overall:
                eqs.append([t] + overall)
            if d == "country":
                continue
            for v in {val[r] for r in rows if dim[r] == d}:
                parts = [idx[(c, d, v)] for c in countries if (c, d, v) in idx]
                if (all_label, d, v) in idx and parts:
                    eqs.append([idx[(all_label, d, v)]] + parts)
            for c in countries:
                parts = [r for r in rows if country[r] == c and dim[r] == d]
                if (all_label, "country", c) in idx and parts:
                    eqs.append([idx[(all_label, "country", c)]] + parts)
    hidden = protect(values, eqs, k, fixed=fixed).hidden
    out = _apply(table, cells, {h for h in hidden if h < len(cells)}, ["learners"])
    ages = pa.table({"course_id": pa.array([b[0] for b in bands], pa.string()),
                     "age_band": pa.array([b[1] for b in bands], pa.string()),
                     "learners": pa.array([None if b[2] in hidden else values[b[2]] for b in bands], pa.int64())})
    return _published_countries(out, table, course, country, dim, val, k, all_label), ages


def _published_countries(out: pa.Table, table: pa.Table, course: list, country: list, dim: list, val: list,
                         k: int, all_label: str) -> pa.Table:
    """``out`` without the per-country rows of countries with fewer than k learners.

    Such a country keeps its hidden cells in the equations (so nothing is recovered by
    subtraction), but its breakdown rows are not published: which values occur there would
    describe those few learners (one learner: their gender, education and year of birth),
    whatever the counts say."""
    small = {(course[r], val[r]) for r in range(table.num_rows)
             if country[r] == all_label and dim[r] == "country" and 0 < (table.column("learners")[r].as_py() or 0) < k}
    if not small:
        return out
    keep = [not (country[r] != all_label and (course[r], country[r]) in small) for r in range(table.num_rows)]
    return out.filter(pa.array(keep))


def check_protected(values: Sequence[int | None], equations: Sequence[Sequence[int]], hidden: set[int],
                    k: int = DEFAULT_K, fixed: Sequence[int] = ()) -> list[str]:
    """Problems with a suppression pattern (empty list = safe): a visible cell in (0, k); an
    equation with exactly one hidden cell or hidden cells summing below k; a hidden cell that
    linear algebra recovers."""
    vals = [int(v) if v is not None else 0 for v in values]
    problems = []
    for i, v in enumerate(vals):
        if 0 < v < k and i not in hidden and i not in fixed and values[i] is not None:
            problems.append(f"cell {i} = {v} published")
    for e in equations:
        h = [c for c in e if c in hidden]
        if len(h) == 1:
            problems.append(f"equation {list(e)} has a single hidden cell {h[0]}")
        elif h and e[0] not in h and sum(vals[c] for c in h) < k:
            problems.append(f"equation {list(e)}: hidden parts of a published total sum to "
                            f"{sum(vals[c] for c in h)} < {k}")
    for c in determined(vals, equations, hidden):
        problems.append(f"hidden cell {c} is determined by the published cells")
    return problems
