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
       more complementary suppression, and steps 2-3 repeat;
    4. bounds check: a reader also knows that a hidden count is at least 1 (zeros are published)
       and never negative; with those floors, every hidden cell under k must still be able to
       reach k (:func:`bounded_below_k`, linear programmes); a cell that cannot gets one more
       complementary suppression in an equation that binds it, and steps 2-4 repeat.
    The result: no hidden cell can be recomputed by adding and subtracting published numbers, and
    none under k can be proved to be under k.

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from ..age import age_band

DEFAULT_K = 5
OTHER = "other"
SUPPRESSED_COLUMN = "suppressed"


_blas_depth = 0


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Linear algebra on one BLAS thread. The SVDs here are small (a few hundred cells a piece): OpenBLAS's
    threads, spinning while the machine's cores are busy (a daily job, parallel tests), made each one
    10 to 60 times slower (0.1-0.6 CPU-s against 0.01 for 170 x 330 on 2 cores). Nested uses cost nothing."""
    global _blas_depth
    if _blas_depth:
        yield
        return
    from threadpoolctl import threadpool_limits

    _blas_depth += 1
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        _blas_depth -= 1


def _single_blas(fn):
    @wraps(fn)
    def run(*args, **kwargs):
        with one_blas_thread():
            return fn(*args, **kwargs)
    return run


@dataclass
class Protection:
    hidden: set[int]
    primary: set[int]
    unprotectable: list[int] = field(default_factory=list)  # cells whose equations are all known otherwise


@_single_blas
def protect(values: Sequence[int | None], equations: Sequence[Sequence[int]], k: int = DEFAULT_K,
            fixed: Sequence[int] = (), zero_is_safe: bool = True, forced: Sequence[int] = (),
            not_counts: Sequence[int] = (), coupling: Sequence[int] = (), unseen: Sequence[int] = (),
            bounds: bool = True, slack: Sequence[int] = ()) -> Protection:
    """Cells to hide. ``equations``: ``[total, part1, part2, ...]`` index lists meaning
    ``values[total] == sum(values[parts])``. ``fixed`` cells are known to every reader (e.g. a total
    published in another report): they are never hidden and never count as unknowns.
    ``not_counts`` are not counts of people (posts, events): no small-cell rule of their own;
    ``forced`` cells are hidden whatever their value (they would reveal a hidden count of people).
    ``unseen``: cells whose very existence is not published (a row left out): a reader cannot
    assume they are at least 1. ``bounds``: run the interval check (:func:`bounded_below_k`).
    ``slack``: counts that are never published and turn an inequality a reader knows into an
    equation (learners with a grade between the passing grade and the next bin edge: ``approved =
    slack + the bins above``, so the bins above add up to at most ``approved``). They are hidden from
    the start, have no floor, and need protecting only when they are small counts themselves."""
    vals = [int(v) if v is not None else 0 for v in values]
    fixed_set = set(fixed)
    known_missing = {i for i, v in enumerate(values) if v is None}
    lo = 0 if zero_is_safe else -1
    exempt = set(not_counts)
    primary = {i for i, v in enumerate(vals) if lo < v < k and i not in fixed_set and i not in known_missing
               and i not in exempt}
    primary |= {i for i in forced if i not in fixed_set and i not in known_missing}
    slack_set = set(slack)
    hidden = set(primary) | slack_set
    unprotectable: list[int] = []
    kept = [n for n, e in enumerate(equations) if len(e) >= 2]
    eqs = [list(dict.fromkeys(equations[n])) for n in kept]
    links = {n for n, m in enumerate(kept) if m in set(coupling)}  # see determined()
    by_cell: dict[int, list[int]] = defaultdict(list)
    for n, e in enumerate(eqs):
        for c in e:
            by_cell[c].append(n)

    # a cell that is the only unknown of an equation of known cells is known itself: hiding it protects nothing
    known = fixed_set | known_missing
    given = {c for e in eqs for c in e if all(o in known for o in e if o != c)}

    def candidates(e: list[int]) -> list[int]:
        cs = [c for c in e if c not in hidden and c not in known and c not in given]
        # prefer parts over the total, non-zero over zero, then the smallest value
        return sorted(cs, key=lambda c: (c == e[0], vals[c] == 0, vals[c], c))

    def complete_equations() -> None:
        changed = True
        while changed:
            changed = False
            for e in eqs:
                h = [c for c in e if c in hidden]
                if not h or not _weak(e, h, vals, k, slack_set):
                    continue
                cs = candidates(e)
                if not cs:
                    if len(h) == 1:
                        unprotectable.extend(x for x in h if x not in unprotectable)
                    continue
                hidden.add(cs[0])
                changed = True

    def widen(c: int, among: Sequence[int]) -> bool:
        """Hide the best candidate of the equations ``among`` (positions in ``eqs``) for cell ``c``."""
        best = None
        for n in among:
            cs = candidates(eqs[n])
            if cs:
                key = (cs[0] == eqs[n][0], vals[cs[0]] == 0, vals[cs[0]], cs[0])
                best = min(best, (key, cs[0])) if best else (key, cs[0])
        if best is None:
            return False
        hidden.add(best[1])
        return True

    solved: dict = {}  # determined() per piece of hidden cells
    bounded: dict = {}  # bounded_below_k() per piece
    unseen_set = set(unseen) | slack_set
    floor = {i: 0 if (i in unseen_set or vals[i] <= 0) else 1 for i in range(len(vals))}
    for _ in range(len(vals) + 1):
        complete_equations()
        det = determined(vals, eqs, hidden, solved, links)
        # (a slack cell worked out exactly matters only when it is a small count itself)
        det = [c for c in det if c not in unprotectable and (c not in slack_set or c in primary)]
        if not det:
            if not bounds:
                break
            small = [c for c in sorted(hidden) if 0 < vals[c] < k and c not in unprotectable and c not in exempt]
            tight = bounded_below_k(vals, eqs, hidden, k, floor, small, bounded)
            if not tight:
                break
            for c, binding in tight.items():
                # the equations that bind its largest value first, then every equation it is in
                if not (widen(c, binding) or widen(c, by_cell.get(c, []))):
                    unprotectable.append(c)
            continue
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
        if not added:  # nothing more to hide for these: go on with the other checks
            unprotectable.extend(det)
    return Protection(hidden, primary, unprotectable)


def _weak(e: Sequence[int], h: list[int], vals: list[int], k: int, slack: set[int] = frozenset()) -> bool:
    """An equation with hidden cells ``h`` gives too much away: a single hidden cell is recovered
    by subtraction; with the total published, the hidden parts' sum is published too. A reader also
    knows that a hidden count is at least 1 (zeros are published, absent rows are zeros), so each
    hidden part is at most ``sum - (len(h) - 1)``: that must be ``>= k`` (n hidden parts adding up to
    n are n ones; a sum below k bounds every part below k). ``slack`` cells (never published, at
    least 0) loosen the equation without being protected by it: :func:`determined` and the bounds
    check look after them."""
    real = [c for c in h if c not in slack]
    if not real:
        return False
    if len(h) == 1:
        return True
    return e[0] not in h and sum(vals[c] for c in h) - (len(real) - 1) < k


def bounded_below_k(values: Sequence[int], equations: Sequence[Sequence[int]], hidden: set[int], k: int,
                    floor: dict[int, int], check: Sequence[int], cache: dict | None = None) -> dict[int, list[int]]:
    """Cells of ``check`` (hidden, under k) that a reader can prove to be under k: the largest value
    consistent with the published cells, the equations and the floors (a hidden count is at least
    ``floor[c]``: 1 where its row is shown, as zeros are published; never negative) is below ``k``.
    Returns each such cell with the positions of the equations that bind that largest value (hiding
    one more cell there loosens it).

    Linear algebra (:func:`determined`) finds cells fixed by the equations alone; bounds add more:
    lower bounds of 1 on many small cells, added up through a margin, leave too little room for a cell
    in another equation (a course's small education values, each present in several countries, were
    pinned so). This is the same question for the continuous relaxation, answered by linear programmes
    (HiGHS): first a few programmes that look for one solution putting many cells at k at once (a
    witness for each of them), then one programme per cell still without a witness. ``cache`` (kept
    by the caller for one set of equations, values and floors): a piece whose cells did not change is
    not solved again."""
    if not check:
        return {}
    # the programmes fall apart into pieces: hidden cells joined by an equation (a published cell is a
    # constant), e.g. one per course, or per country and attribute where the country total is published
    kept = [n for n, e in enumerate(equations)
            if any(c in hidden for c in e) and values[e[0]] == sum(values[c] for c in e[1:])]
    # (an equation the data does not satisfy is no relation a reader can use)
    parent = {c: c for c in hidden}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for n in kept:
        cs = [c for c in equations[n] if c in parent]
        for c in cs[1:]:
            a, b = find(cs[0]), find(c)
            if a != b:
                parent[b] = a
    eqs_of: dict[int, list[int]] = defaultdict(list)
    for n in kept:
        eqs_of[find(next(c for c in equations[n] if c in parent))].append(n)
    cells_of: dict[int, list[int]] = defaultdict(list)
    for c in sorted(hidden):
        cells_of[find(c)].append(c)
    todo_of: dict[int, list[int]] = defaultdict(list)
    for c in check:
        if c in parent and find(c) in eqs_of:  # (a cell in no equation has no upper bound)
            todo_of[find(c)].append(c)
    out: dict[int, list[int]] = {}
    for root, todo in todo_of.items():
        key = (tuple(cells_of[root]), tuple(todo))
        if cache is None or key not in cache:
            found = _bounded_piece(values, equations, eqs_of[root], cells_of[root], k, floor, todo)
            if cache is None:
                out.update(found)
                continue
            cache[key] = found
        out.update(cache[key])
    return out


def _bounded_piece(values: Sequence[int], equations: Sequence[Sequence[int]], kept: list[int], cells: list[int],
                   k: int, floor: dict[int, int], todo: list[int]) -> dict[int, list[int]]:
    """:func:`bounded_below_k` for one piece: ``cells`` hidden, ``kept`` the positions of its equations."""
    import highspy

    unknown = cells
    col = {c: j for j, c in enumerate(unknown)}
    nx, m = len(unknown), len(todo)
    # columns: x (the hidden cells), then y_s <= min(x_s, k) for the witness programmes
    entries: list[dict[int, float]] = [defaultdict(float) for _ in range(nx + m)]
    rows: list[int] = []  # positions in equations of the rows kept
    rhs: list[float] = []
    for n in kept:
        e = equations[n]
        known = 0.0
        for pos, c in enumerate(e):
            sign = 1.0 if pos == 0 else -1.0
            if c in col:
                entries[col[c]][len(rows)] += sign
            else:
                known -= sign * values[c]
        rows.append(n)
        rhs.append(known)
    ne = len(rows)
    for t, c in enumerate(todo):  # y_t - x_c <= 0
        entries[col[c]][ne + t] -= 1.0
        entries[nx + t][ne + t] += 1.0
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = nx + m, ne + m
    lp.sense_ = highspy.ObjSense.kMaximize
    # distinct weights: among cells that compete for the same room, the solver fills the heaviest up to k
    # (with equal weights a tie can spread the room so that none reaches k, and nothing is shown)
    weight = [1.0 + ((t * 7919) % 1009) / 1009 for t in range(m)]
    lp.col_cost_ = np.array([0.0] * nx + weight)
    lp.col_lower_ = np.array([float(floor.get(c, 1)) for c in unknown] + [0.0] * m)
    lp.col_upper_ = np.array([inf] * nx + [float(k)] * m)
    lp.row_lower_ = np.array(rhs + [-inf] * m)
    lp.row_upper_ = np.array(rhs + [0.0] * m)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    start, index, value = [0], [], []
    for col_entries in entries:
        for r in sorted(col_entries):
            if col_entries[r]:
                index.append(r)
                value.append(col_entries[r])
        start.append(len(index))
    lp.a_matrix_.start_ = np.array(start, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value)
    h = _highs()
    h.passModel(lp)
    slack = k - 1e-6
    ok = highspy.HighsModelStatus.kOptimal
    open_ = dict.fromkeys(range(m))  # witness columns still to show (positions in todo)
    while open_:  # witnesses: maximise the sum of min(x_s, k) over the cells still to show
        h.run()
        if h.getModelStatus() != ok:
            break
        x = np.asarray(h.getSolution().col_value)
        shown = [t for t in open_ if x[nx + t] >= slack or x[col[todo[t]]] >= slack]
        if not shown:
            break
        for t in shown:
            del open_[t]
            h.changeColCost(nx + t, 0.0)
    for t in open_:
        h.changeColCost(nx + t, 0.0)
    out: dict[int, list[int]] = {}
    for t in list(open_):
        if t not in open_:
            continue  # shown by an earlier cell's solution
        c = todo[t]
        h.changeColCost(col[c], 1.0)
        h.run()
        status = h.getModelStatus()
        h.changeColCost(col[c], 0.0)
        if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            continue  # no upper bound at all
        if status != ok:  # no answer from the solver: treat the cell as exposed (hide more)
            out[c] = [n for n in rows if c in equations[n]]
            continue
        sol = h.getSolution()
        x = np.asarray(sol.col_value)
        for u in [u for u in open_ if x[col[todo[u]]] >= slack]:  # a witness for every cell it puts at k
            del open_[u]
        if x[col[c]] >= slack:
            continue
        dual = np.abs(np.asarray(sol.row_dual)[:ne])
        out[c] = [rows[i] for i in np.argsort(-dual, kind="stable") if dual[i] > 1e-9]
    return out


def _highs():
    """A silent HiGHS solver. Its constructor prints a banner on file descriptor 1 (C stdio, before any
    option can be set), which would land inside a report written to standard output: the descriptor
    points to /dev/null while it runs."""
    import ctypes
    import os
    import sys

    import highspy

    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no standard output at all: nothing to protect
        h = highspy.Highs()
    else:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            h = highspy.Highs()
            ctypes.CDLL(None).fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
    h.silent()
    h.setOptionValue("presolve", "off")  # one model solved for many objectives: keep the basis
    h.setOptionValue("simplex_strategy", 4)  # primal simplex: a new objective leaves the basis primal feasible
    return h


@_single_blas
def determined(values: Sequence[int], equations: Sequence[Sequence[int]], hidden: set[int],
               cache: dict | None = None, coupling: Sequence[int] = ()) -> list[int]:
    """Hidden cells that the published cells and the equations determine exactly.

    A hidden cell is determined when its unit vector lies in the row space of the equations
    written over the hidden cells (the published ones are constants), i.e. when its projection on
    that row space (an orthonormal basis from a thin SVD) has length 1. The system falls apart into
    independent pieces (e.g. one per course of a report): each is solved on its own, so the cost
    follows the largest piece, not the whole table (200 courses' breakdowns at once were one SVD of
    some 10,000 unknowns: 340 s and 4 GB). ``cache`` (a dict kept by the caller for one set of
    ``equations``): a piece's row space depends only on its hidden cells, so a piece that a new hidden
    cell did not touch is not solved again (``protect`` adds one cell per round).

    ``coupling``: positions in ``equations`` of the few equations that join pieces (a programme
    total over every course's cell). They are left out of the pieces; the row space of the whole
    system is the pieces' row spaces plus, orthogonal to them, the row space of the coupling rows
    minus their projections on the pieces' row spaces (a few rows). A cell is determined exactly
    when its projections on both add up to length 1. Same answer as one SVD of everything, at the
    cost of the pieces."""
    unknown = sorted(hidden)
    if not unknown:
        return []
    col = {c: j for j, c in enumerate(unknown)}
    couple = set(coupling)
    rows_of: list[tuple[list[int], Sequence[int]]] = []
    links: list[Sequence[int]] = []
    for n, e in enumerate(equations):
        r = [c for c in e if c in col]
        if not r:
            continue
        if n in couple:
            links.append(e)
        else:
            rows_of.append((r, e))
    if not rows_of and not links:
        return []
    parent = list(range(len(unknown)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(r: list[int]) -> None:
        a = find(col[r[0]])
        for c in r[1:]:
            b = find(col[c])
            if a != b:
                parent[b] = a

    for r, _ in rows_of:
        union(r)
    pieces: dict[int, list[tuple[list[int], Sequence[int]]]] = defaultdict(list)
    for r, _e in rows_of:
        pieces[find(col[r[0]])].append((r, _e))
    for e in links:  # a cell only in coupling equations is a piece of its own
        for c in e:
            if c in col and find(col[c]) not in pieces:
                pieces[find(col[c])] = []
    solved: dict[int, tuple[list[int], np.ndarray]] = {}  # piece root -> (cells, row-space basis)
    out: list[int] = []
    for root, piece in pieces.items():
        cells = sorted({c for r, _ in piece for c in r} | ({unknown[root]} if not piece else set()))
        key = tuple(cells)
        if cache is not None and key in cache:
            basis, found = cache[key]
        else:
            pos = {c: j for j, c in enumerate(cells)}
            a = np.zeros((len(piece), len(cells)))
            for i, (_, e) in enumerate(piece):
                for k, c in enumerate(e):
                    if c in pos:
                        a[i, pos[c]] += 1.0 if k == 0 else -1.0
            basis = _row_basis(a, len(cells))
            # e_j in the row space  <=>  its projection on the row space has length 1
            found = [cells[j] for j in range(len(cells)) if 1.0 - (basis[:, j] ** 2).sum() < 1e-9]
            if cache is not None:
                cache[key] = (basis, found)
        solved[root] = (cells, basis)
        out += found
    if links:
        # pieces joined by coupling equations C: the row space of the whole system is the pieces' row space
        # plus, orthogonal to it, the row space of C's rows minus their projections on the pieces' row spaces
        group = {root: root for root in solved}

        def gfind(x: int) -> int:
            while group[x] != x:
                group[x] = group[group[x]]
                x = group[x]
            return x

        for e in links:
            roots = [find(col[c]) for c in e if c in col]
            for r_ in roots[1:]:
                a_, b_ = gfind(roots[0]), gfind(r_)
                if a_ != b_:
                    group[b_] = a_
        members: dict[int, list[int]] = defaultdict(list)
        for root in solved:
            members[gfind(root)].append(root)
        glinks: dict[int, list[Sequence[int]]] = defaultdict(list)
        for e in links:
            glinks[gfind(find(col[next(c for c in e if c in col)]))].append(e)
        out_set = set(out)
        for g, roots in members.items():
            if not glinks.get(g):
                continue
            offset, width = {}, 0
            where: dict[int, tuple[int, int]] = {}  # cell -> (piece root, column in its piece)
            for root in roots:
                offset[root] = width
                cells, _ = solved[root]
                width += len(cells)
                for j, c in enumerate(cells):
                    where[c] = (root, j)
            m = np.zeros((len(glinks[g]), width))
            for i, e in enumerate(glinks[g]):
                for k, c in enumerate(e):
                    if c in where:
                        root, j = where[c]
                        m[i, offset[root] + j] += 1.0 if k == 0 else -1.0
            for root in roots:  # remove each piece's row space from C's rows
                cells, basis = solved[root]
                if basis.shape[0]:
                    block = m[:, offset[root]:offset[root] + len(cells)]
                    block -= (block @ basis.T) @ basis
            q = _row_basis(m, width)
            for c, (root, j) in where.items():
                if c in out_set:
                    continue
                basis = solved[root][1]
                inside = (basis[:, j] ** 2).sum() + (q[:, offset[root] + j] ** 2).sum()
                if 1.0 - inside < 1e-9:
                    out.append(c)
    return sorted(out)


def _row_basis(a: np.ndarray, width: int) -> np.ndarray:
    """An orthonormal basis of the row space of ``a`` (rank x width). A thin SVD: the row space is all a
    determined cell needs (its unit vector lies in it), and costs far less than the null space of a wide
    piece (a full SVD of n x n for n cells)."""
    if a.shape[0] == 0 or width == 0:
        return np.zeros((0, width))
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    rank = int((s > 1e-9 * max(1.0, s.max())).sum()) if s.size else 0
    return vt[:rank]


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


# Suppression is a function of a table's content, never of its row order: every function below
# builds its cells and equations from the rows sorted by their key columns (then by their counts),
# so a tie between two candidate complements is broken by key values, not positions, and the same
# table read from DuckDB or PostgreSQL, built fully or incrementally, hides the same cells.
KEY_ORDER = ("course_id", "date", "week", "month", "country", "dimension", "value", "mode", "age_band",
             "cert_status", "grade_from", "video_id", "problem_id")


def _sort_key(v):
    return (v is None, "" if v is None else v)


def canonical_order(table: pa.Table, columns: Sequence[str] = ()) -> list[int]:
    """Row positions of ``table`` in its canonical order: sorted by the usual key columns, then
    ``columns`` (or every other column), NULLs last. Rows that tie are identical in those columns."""
    rest = [c for c in (columns or table.column_names) if c not in KEY_ORDER and c != SUPPRESSED_COLUMN]
    keys = [c for c in KEY_ORDER if c in table.column_names] + rest
    data = [table.column(c).to_pylist() for c in keys]
    return sorted(range(table.num_rows), key=lambda r: tuple(_sort_key(col[r]) for col in data))


def _canonical(table: pa.Table, columns: Sequence[str] = ()) -> tuple[pa.Table, pa.Array]:
    """(the table in canonical order, the positions that take it back to the input's order)."""
    order = canonical_order(table, columns)
    back = [0] * len(order)
    for new, old in enumerate(order):
        back[old] = new
    return table.take(pa.array(order, pa.int64())), pa.array(back, pa.int64())


def _str_key(v):
    return (v is None, str(v))


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
    table, back = _canonical(table, [c for c in table.column_names if c not in cols] + cols)
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
    return _apply(table, cells, {h for h in hidden if h < len(cells)}, cols).take(back)


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
    table, back = _canonical(table, [*by, row_key, col_key, count])
    cells = [(r, count) for r in range(table.num_rows)]
    values: list[int | None] = table.column(count).to_pylist()
    values = list(values)
    rk, ck = table.column(row_key).to_pylist(), table.column(col_key).to_pylist()
    eqs: list[list[int]] = []
    fixed: list[int] = []
    for _, rows in _groups(table, by).items():
        grid: dict[tuple, int] = {(rk[r], ck[r]): r for r in rows}
        rvals = sorted({rk[r] for r in rows if rk[r] != total_label or total_label is None}, key=_str_key)
        cvals = sorted({ck[r] for r in rows if ck[r] != total_label or total_label is None}, key=_str_key)

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
    return _apply(table, cells, {h for h in hidden if h < len(cells)}, [count]).take(back)


def merge_small(table: pa.Table, category: str, count_columns: Sequence[str] | str, k: int = DEFAULT_K, *,
                by: Sequence[str] = (), other: str = OTHER, need: dict | None = None,
                floors: dict | None = None) -> pa.Table:
    """Merge categories whose (first) count is below ``k`` into ``other``, per ``by`` group.

    The first count column decides; further count columns are summed alongside. Output rows:
    the kept categories (in input order) then the group's ``other`` row; an ``other`` below
    ``k`` (the whole group is small) is published as NULL and flagged in ``suppressed``.
    ``need``: category -> the least value it may be known up to (more than k where a published value
    would bound hidden cells of another table below k, see :func:`programme_needs`): a category below
    it is merged too, and the pool must leave each of its members that much room. ``floors``:
    category -> what a reader knows it to be at least (else 1 for a non-zero count).
    """
    need, floors = need or {}, floors or {}
    cols = [count_columns] if isinstance(count_columns, str) else list(count_columns)
    main = cols[0]
    data = table.to_pylist()
    out_rows: list[dict] = []
    for key, rows in _groups(table, by).items():
        items = [data[r] for r in rows]
        def least(x) -> int:
            return max(k, need.get(x[category], 0))

        def floor(x) -> int:  # zeros are published as such: they count for nothing
            return max(1, floors.get(x[category], 1)) if (x[main] or 0) > 0 else 0

        small = [x for x in items if 0 < (x[main] or 0) < least(x) or x[category] == other]
        rest = sorted((x for x in items if x not in small), key=lambda x: (x[main] or 0, str(x[category])))
        if small:
            total = sum(x[main] or 0 for x in small)

            def roomy() -> bool:
                # a reader knows each merged category is at least 1 (the breakdowns list the values that
                # occur; more where ``floors`` say so): each is then at most total - the others' floors,
                # which must still be k (its ``need``) or more (as in _weak)
                fl = sum(floor(x) for x in small)
                return all(total - (fl - floor(x)) >= least(x) for x in small if (x[main] or 0) > 0)

            while (not roomy() or len(small) < 2) and rest:
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
                              known_course_totals: dict[str, int] | None = None,
                              summary: pa.Table | None = None) -> pa.Table:
    """``course_breakdown`` (course_id, country, dimension, value, learners): per course, the
    learners by gender / education / year of birth, overall (country = "(all)") and per
    country, plus learners per country (dimension "country"). One system of equations per
    course links them all: for each dimension d and value v, (all, d, v) = sum over countries
    of (c, d, v); for each country c, (all, country, c) = sum over v of (c, d, v); and the
    course's learner total (``known_course_totals``, else the sum) = sum of every breakdown.

    The course's age bands (``age.age_band`` of the overall years of birth), which the public
    dashboard publishes, are cells of the same system: a band is the sum of its years, so the
    two outputs together give back no hidden cell.
    With ``summary`` (``course_summary``) the headline figures are cells of the same system too
    (:func:`suppress_course_tables`): what every public output publishes.
    """
    return suppress_course_tables(summary, table, k, all_label, known_course_totals)[1]


# course_summary's counts of people, and the additive relations inside a row
SUMMARY_COUNTS = ("enrolled", "enrolled_active", "unenrolled", "active", "active_events", "explored",
                  "certificates_failed", "approved", "certified", "male", "female", "other_unknown")
SUMMARY_ROW_SUMS = (("enrolled", ("male", "female", "other_unknown")), ("enrolled", ("enrolled_active", "unenrolled")))
# course_summary's gender columns = sums of the overall gender cells of course_breakdown
SUMMARY_GENDER = (("male", lambda v: v == "m"), ("female", lambda v: v == "f"),
                  ("other_unknown", lambda v: v not in ("m", "f")))


def suppress_course_tables(summary: pa.Table | None, breakdown: pa.Table, k: int = DEFAULT_K,
                           all_label: str = "(all)", known_course_totals: dict[str, int] | None = None,
                           year: int | None = None) -> tuple[pa.Table | None, pa.Table, pa.Table]:
    """``course_summary``, ``course_breakdown`` and the course age bands suppressed as ONE system:
    (summary, breakdown, ages). They publish the same facts more than once (a course's enrolment is
    the summary's ``enrolled`` and the breakdown's total; the summary's ``male`` is the breakdown's
    overall gender "m"; an age band is a sum of years of birth), so suppressed apart they could
    hide different cells of the same fact, and together give back a hidden one. Every public output
    (``export``/``report --public`` of course_summary, general_report, course_breakdown and the
    course report, the public dashboard) takes its cells from this one result.

    Summary: its row sums (enrolled = male + female + other_unknown = enrolled_active + unenrolled)
    and its column totals (known: the dashboard publishes them) are equations; its gender cells
    equal sums of breakdown cells; its ``enrolled`` is the breakdown's course total when the two
    agree (else that total is treated as known), and is published (``fixed``) unless a course has
    fewer than k learners. A country's rows are published from ``country_detail_min(k)`` learners
    up. Cells and equations are built from the tables in canonical order (by key), so the result
    depends on the content only."""
    b, bback = _canonical(breakdown, ["course_id", "country", "dimension", "value", "learners"])
    course = b.column("course_id").to_pylist()
    country = b.column("country").to_pylist()
    dim = b.column("dimension").to_pylist()
    val = b.column("value").to_pylist()
    values: list[int | None] = list(b.column("learners").to_pylist())
    cells = [(r, "learners") for r in range(b.num_rows)]
    eqs: list[list[int]] = []
    fixed: list[int] = []
    coupling: list[int] = []
    # the summary's cells
    s = sback = None
    scols: list[str] = []
    scells: list[tuple[int, str]] = []
    sidx: dict[tuple[int, str], int] = {}
    srow: dict[str, int] = {}
    if summary is not None:
        scols = [c for c in SUMMARY_COUNTS if c in summary.column_names]
        s, sback = _canonical(summary, [c for c in summary.column_names if c not in scols] + scols)
        sdata = {c: s.column(c).to_pylist() for c in scols}
        for r, cid in enumerate(s.column("course_id").to_pylist()):
            srow.setdefault(cid, r)
            for c in scols:
                sidx[(r, c)] = len(values)
                scells.append((r, c))
                values.append(sdata[c][r])
            for total, parts in SUMMARY_ROW_SUMS:
                if total in scols and all(p_ in scols for p_ in parts):
                    eqs.append([sidx[(r, total)]] + [sidx[(r, p_)] for p_ in parts])
        if "enrolled" in scols and not any(0 < (v or 0) < k for v in sdata["enrolled"]):
            # a course's enrolment is public (the breakdown's course total always was): never hidden as a
            # complement. With a course under k, every enrolment may be hidden, or the programme total
            # minus the others would give the small one back.
            fixed += [sidx[(r, "enrolled")] for r in range(s.num_rows)]
        for c in scols:  # column totals: known to the reader (the dashboard's headline publishes them)
            fixed.append(len(values))
            values.append(sum(v or 0 for v in sdata[c]))
            coupling.append(len(eqs))  # they join every course's system: see determined()
            eqs.append([len(values) - 1] + [sidx[(r, c)] for r in range(s.num_rows)])
    per_course: dict[str, list[int]] = defaultdict(list)
    bands: list[tuple[str, str, int]] = []  # (course, band, cell)
    for r in range(b.num_rows):
        per_course[course[r]].append(r)
    for cid, rows in per_course.items():
        idx = {(country[r], dim[r], val[r]): r for r in rows}
        dims = sorted({dim[r] for r in rows}, key=_str_key)
        countries = sorted({country[r] for r in rows if country[r] != all_label}, key=_str_key)
        if known_course_totals and cid in known_course_totals:
            total = known_course_totals[cid]
        else:
            total = sum(values[r] or 0 for r in rows if country[r] == all_label and dim[r] == "country")
        sr = srow.get(cid)
        if sr is not None and "enrolled" in scols and values[sidx[(sr, "enrolled")]] == total:
            t = sidx[(sr, "enrolled")]  # the same number: one cell
        else:
            t = len(values)
            values.append(total)
            fixed.append(t)
        if sr is not None:
            genders = [r for r in rows if country[r] == all_label and dim[r] == "gender"]
            for col, is_part in SUMMARY_GENDER:
                parts = [r for r in genders if is_part(val[r])]
                if col in scols and parts and values[sidx[(sr, col)]] == sum(values[r] or 0 for r in parts):
                    eqs.append([sidx[(sr, col)]] + parts)
        by_band: dict[str, list[int]] = defaultdict(list)  # band -> the overall year-of-birth cells in it
        for r in rows:
            if country[r] == all_label and dim[r] == "year_of_birth":
                by_band[age_band(val[r], year)].append(r)
        band_cells = []
        for band, parts in sorted(by_band.items()):
            bands.append((cid, band, len(values)))
            band_cells.append(len(values))
            values.append(sum(values[r] or 0 for r in parts))
            eqs.append([len(values) - 1] + parts)
        if band_cells and values[t] == sum(values[b_] for b_ in band_cells):
            # the age chart's bands add up to the course total published beside it (funnel, cards): a
            # band hidden alone would be total - the others; as an equation, another band is hidden too
            eqs.append([t] + band_cells)
        for d in dims:
            dvals = sorted({val[r] for r in rows if dim[r] == d}, key=_str_key)
            overall = [idx[(all_label, d, v)] for v in dvals if (all_label, d, v) in idx]
            if overall:
                eqs.append([t] + overall)
            if d == "country":
                continue
            for v in dvals:
                parts = [idx[(c, d, v)] for c in countries if (c, d, v) in idx]
                if (all_label, d, v) in idx and parts:
                    eqs.append([idx[(all_label, d, v)]] + parts)
            for c in countries:
                parts = [r for r in rows if country[r] == c and dim[r] == d]
                if (all_label, "country", c) in idx and parts:
                    eqs.append([idx[(all_label, "country", c)]] + parts)
    # the rows of a country under country_detail_min(k) learners are not published (_published_countries):
    # a reader cannot know they exist (no floor), and those of k or more are hidden from the start
    # without needing protection themselves (slack)
    undetailed = {(course[r], val[r]) for r in range(b.num_rows)
                  if country[r] == all_label and dim[r] == "country" and 0 < (values[r] or 0) < country_detail_min(k)}
    unseen = [r for r in range(b.num_rows) if country[r] != all_label and (course[r], country[r]) in undetailed]
    slack = [r for r in unseen if (values[r] or 0) >= k]
    hidden = protect(values, eqs, k, fixed=fixed, coupling=coupling, unseen=unseen, slack=slack).hidden
    out = _apply(b, cells, {h for h in hidden if h < len(cells)}, ["learners"]).take(bback)
    ages = pa.table({"course_id": pa.array([x[0] for x in bands], pa.string()),
                     "age_band": pa.array([x[1] for x in bands], pa.string()),
                     "learners": pa.array([None if x[2] in hidden else values[x[2]] for x in bands], pa.int64())})
    sout = None
    if s is not None:
        first = len(cells)
        shidden = {i - first for i in hidden if first <= i < first + len(scells)}
        sout = _apply(s, scells, shidden, scols).take(sback)
    return sout, _published_countries(out, undetailed, all_label), ages


def programme_needs(public_breakdown: pa.Table, dimension: str, k: int = DEFAULT_K, all_label: str = "(all)",
                    courses: set[str] | None = None) -> tuple[dict, dict]:
    """For the programme's learners by ``dimension`` (country, gender, level_of_education: distinct
    learners, published by the dashboard): per value, (need, floor) from the public course breakdown.

    A course's learners of a value are learners of the programme with it, so the programme's count P
    bounds the course's overall cell (``(all)``, ``dimension``, value). Where the course hides that
    cell, P bounds each of its hidden parts at P - the published parts - (the other hidden parts,
    each at least 1): for a country, the course's cells of that country in each other dimension; for a
    gender or education, the country cells of that value (helper-61: a programme Chile of 24 held a
    course's 19 hidden years of birth of Chile, with the country's count hidden, to at most 7 at
    k = 10). ``need``: value -> the least P that leaves every such part room for k. ``floor``:
    value -> what a reader knows P to be at least (the largest course cell, or its parts' published
    values plus one per hidden part)."""
    need: dict = defaultdict(int)
    floor: dict = defaultdict(int)
    rows = [r for r in public_breakdown.to_pylist() if courses is None or r["course_id"] in courses]
    overall: dict[tuple, dict] = {}
    parts: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["country"] == all_label:
            if r["dimension"] == dimension:
                overall[(r["course_id"], r["value"])] = r
        elif dimension == "country":
            parts[(r["course_id"], r["country"])][r["dimension"]].append(r)
        elif r["dimension"] == dimension:
            parts[(r["course_id"], r["value"])][dimension].append(r)
    for (cid, v), cell in overall.items():
        if cell["learners"] is not None:
            floor[v] = max(floor[v], cell["learners"])
            continue
        for cells in parts.get((cid, v), {}).values():
            hidden = sum(1 for r in cells if r["learners"] is None)
            shown = sum(r["learners"] for r in cells if r["learners"] is not None)
            floor[v] = max(floor[v], shown + hidden)
            if hidden:
                need[v] = max(need[v], k + shown + hidden - 1)
    return dict(need), dict(floor)


def suppress_programme_bands(bands: pa.Table, public_breakdown: pa.Table, k: int = DEFAULT_K,
                             all_label: str = "(all)", courses: set[str] | None = None,
                             year: int | None = None) -> pa.Table:
    """The programme's age bands (``age_band``, ``learners``: distinct learners, adding up to the
    published learner total), suppressed knowing what the public course breakdown hides.

    A course's learners are learners of the programme, so a course's band is at most the programme's:
    a published programme band P bounds every hidden overall year of birth of that band in a course
    at P - (the band's published years) - (its other hidden years, each at least 1), and a hidden
    country cell of such a year at that minus its year's other hidden country cells (helper-60/61:
    at k = 10 a programme "unknown" of 10 held a course's hidden "1900" and "unknown" years, 1 and 3,
    to at most 9 each). Suppressed apart from the course bands, that bound was not looked at. A
    programme band whose largest value a reader can know (itself when published; the hidden bands'
    sum less one for each other hidden band when not) falls below what some course needs
    (k + published years + other hidden years + other hidden country cells of a year) is hidden, with
    complements, until none does. Only courses in ``courses`` (all when None) count: the bands are
    over their learners."""
    data = bands.to_pylist()
    vals = [int(r["learners"] or 0) for r in data]
    n = len(vals)
    need: dict[str, int] = defaultdict(int)  # band -> the least published value no course is bounded by
    rows = [r for r in public_breakdown.to_pylist() if r["dimension"] == "year_of_birth"
            and (courses is None or r["course_id"] in courses)]
    country_hidden: dict[tuple, int] = defaultdict(int)  # (course, year) -> hidden country cells shown
    for r in rows:
        if r["country"] != all_label and r["learners"] is None:
            country_hidden[(r["course_id"], r["value"])] += 1
    per: dict[tuple, list] = defaultdict(list)  # (course, band) -> its overall year cells
    for r in rows:
        if r["country"] == all_label:
            per[(r["course_id"], age_band(r["value"], year))].append(r)
    for (cid, band), cells in per.items():
        hidden = [r for r in cells if r["learners"] is None]
        if not hidden:
            continue
        shown = sum(r["learners"] or 0 for r in cells if r["learners"] is not None)
        extra = max(max(country_hidden[(cid, r["value"])] for r in hidden) - 1, 0)
        need[band] = max(need[band], k + shown + len(hidden) - 1 + extra)
    values = vals + [sum(vals)]
    eqs = [[n, *range(n)]]
    forced: set[int] = set()
    while True:
        hidden = {h for h in protect(values, eqs, k, fixed=[n], forced=sorted(forced)).hidden if h < n}
        room = sum(vals[h] for h in hidden) - (len(hidden) - 1)
        most = [room if i in hidden else vals[i] for i in range(n)]
        new = {i for i in range(n) if 0 < vals[i] and most[i] < need.get(data[i]["age_band"], 0)} - forced
        if not new:  # (forced only grows: at most n rounds)
            break
        forced |= new
    return _apply(bands, [(i, "learners") for i in range(n)], hidden, ["learners"])


def week_start(d) -> str | None:
    """The Monday of ``d``'s week, as the dashboard's weekly enrolments write it (DuckDB's
    ``date_trunc('week', ...)``)."""
    if d is None:
        return None
    import datetime as dt

    day = d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)[:10])
    return (day - dt.timedelta(days=day.weekday())).isoformat()


def suppress_enrolments(daily: pa.Table, k: int = DEFAULT_K, all_label: str = "(all)") -> tuple[pa.Table, pa.Table]:
    """``enrolment_daily``'s ``enrollments`` (course_id, date, mode) and the public dashboard's weekly
    enrolments (course_id, week, mode, with ``all_label`` totals), made safe together: a week is the
    sum of its days. Suppressed apart, a week the dashboard shows minus the days the export shows
    bounded (or gave back) a hidden day, and a hidden week was the sum of its published days
    (helper-60). Returns (the daily rows that may be published, the weekly table).

    The weekly table is suppressed first, as a crosstab with its totals as cells. The days of a
    (week, mode) that it hides are then not published at all (their rows would show how many days of
    that week had enrolments, each at least 1: floors that pinned the hidden weeks); the days of a
    shown (week, mode) add up to its published count, which is their equation, and are left out too
    when no suppression can protect them (a shown 5 of days 1, 2 and 2). Rows without a date
    belong to no week: each is published unless it is small. A date's total over the modes is
    published nowhere, so it is no equation."""
    d, back = _canonical(daily, ["course_id", "date", "mode", "enrollments"])
    course = d.column("course_id").to_pylist()
    date = d.column("date").to_pylist()
    mode = d.column("mode").to_pylist()
    n = [v or 0 for v in d.column("enrollments").to_pylist()]
    week = [week_start(x) for x in date]
    sums: dict[tuple, int] = defaultdict(int)
    for r in range(d.num_rows):
        if week[r] is None:
            continue
        for key in ((week[r], mode[r]), (week[r], all_label), (all_label, mode[r]), (all_label, all_label)):
            sums[(course[r], *key)] += n[r]
    keys = sorted(sums, key=lambda x: (x[0], x[1], _str_key(x[2])))
    weekly = pa.table({"course_id": pa.array([x[0] for x in keys], pa.string()),
                       "week": pa.array([x[1] for x in keys], pa.string()),
                       "mode": pa.array([x[2] for x in keys], pa.string()),
                       "enrollments": pa.array([sums[x] for x in keys], pa.int64())})
    weekly = suppress_crosstab(weekly, "week", "mode", "enrollments", k, by=["course_id"], total_label=all_label)
    shown = {(c, w, m): v for c, w, m, v in zip(*(weekly.column(x).to_pylist()
                                                  for x in ("course_id", "week", "mode", "enrollments")))
             if v is not None}
    keep = [week[r] is None or (course[r], week[r], mode[r]) in shown for r in range(d.num_rows)]
    values: list[int | None] = list(n)
    eqs: list[list[int]] = []
    fixed: list[int] = []
    parts: dict[tuple, list[int]] = defaultdict(list)
    for r in range(d.num_rows):
        if keep[r] and week[r] is not None:
            parts[(course[r], week[r], mode[r])].append(r)
    for key in sorted(parts, key=lambda x: (x[0], x[1], _str_key(x[2]))):
        fixed.append(len(values))
        values.append(shown[key])
        eqs.append([len(values) - 1] + parts[key])
    guard = protect(values, eqs, k, fixed=fixed)
    hidden = guard.hidden
    for key, rows in parts.items():  # days that no suppression protects under a shown week (5 = 1 + 2 + 2)
        if any(r in guard.unprotectable for r in rows):
            for r in rows:
                keep[r] = False
    cells = [(r, "enrollments") for r in range(d.num_rows)]
    out = _apply(d, cells, {h for h in hidden if h < d.num_rows}, ["enrollments"])
    out = out.take(back)  # back to the input's order, without the rows of hidden weeks
    return out.filter(pa.array([keep[i] for i in back.to_pylist()])), weekly


# general_report's count columns: course_summary's, renamed
GENERAL_OF_SUMMARY = {"total": "enrolled", "active": "active", "approved": "approved", "certified": "certified",
                      "failed": "certificates_failed", "male": "male", "female": "female",
                      "other_unknown": "other_unknown"}


def general_from_summary(general: pa.Table, public_summary: pa.Table) -> pa.Table:
    """``general_report`` (a selection of course_summary's columns, renamed) with exactly the cells that
    the suppressed ``public_summary`` hides: the two publish the same numbers, so they hide the same."""
    by_course = {r["course_id"]: r for r in public_summary.to_pylist()}
    hidden_of = {cid: set((r.get(SUPPRESSED_COLUMN) or "").split(";")) - {""} for cid, r in by_course.items()}
    ids = general.column("course_id").to_pylist()
    out = general
    names: list[list[str]] = [[] for _ in ids]
    for gcol, scol in GENERAL_OF_SUMMARY.items():
        if gcol not in out.column_names:
            continue
        vals = out.column(gcol).to_pylist()
        for i, cid in enumerate(ids):
            if cid not in by_course or scol in hidden_of[cid]:
                # a course the summary does not have is hidden whole (nothing protects it)
                if vals[i] is not None or cid not in by_course:
                    vals[i] = None
                    names[i].append(gcol)
        out = out.set_column(out.schema.get_field_index(gcol), gcol, pa.array(vals, out.schema.field(gcol).type))
    sup = pa.array([";".join(n) or None for n in names], pa.string())
    if SUPPRESSED_COLUMN in out.column_names:
        return out.set_column(out.schema.get_field_index(SUPPRESSED_COLUMN), SUPPRESSED_COLUMN, sup)
    return out.append_column(SUPPRESSED_COLUMN, sup)


COUNTRY_DETAIL_MIN_K = 2  # a country's breakdown rows are published from this many times k learners up


def country_detail_min(k: int) -> int:
    """The fewest learners a country needs for its breakdown rows (its learners by gender, education
    and year of birth) to be published. At k, the rows of a country of k to 2k - 1 learners were
    almost all hidden, and their existence (each at least 1) bounded the course's other cells, so
    that a course of 150 learners showed no education or country chart; at 2k (a 10 x 150-learner
    programme, k = 5) the age bands hidden went from 41 to 15 of 61, the overall education values
    shown from 26 to 37 and the countries from 7 to 17, and more per-country cells were shown (gender
    32 to 37, education 31 to 40), not fewer."""
    return COUNTRY_DETAIL_MIN_K * k


def _published_countries(out: pa.Table, undetailed: set[tuple], all_label: str) -> pa.Table:
    """``out`` without the per-country rows of the ``undetailed`` (course, country) pairs: countries
    with fewer than ``country_detail_min(k)`` learners.

    Such a country keeps its cells in the equations (so nothing is recovered by subtraction), but
    its breakdown rows are not published: which values occur there would describe those few
    learners (one learner: their gender, education and year of birth), whatever the counts say."""
    if not undetailed:
        return out
    keys = zip(out.column("course_id").to_pylist(), out.column("country").to_pylist())
    return out.filter(pa.array([not (c != all_label and (cid, c) in undetailed) for cid, c in keys]))


@_single_blas
def check_protected(values: Sequence[int | None], equations: Sequence[Sequence[int]], hidden: set[int],
                    k: int = DEFAULT_K, fixed: Sequence[int] = (), unseen: Sequence[int] = ()) -> list[str]:
    """Problems with a suppression pattern (empty list = safe): a visible cell in (0, k); an
    equation with exactly one hidden cell or hidden cells summing below k; a hidden cell that
    linear algebra recovers; a hidden cell under k that the published cells, the equations and the
    floors (hidden counts at least 1, except ``unseen`` ones) prove to be under k."""
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
    floor = {i: 0 if (i in set(unseen) or v <= 0) else 1 for i, v in enumerate(vals)}
    small = [c for c in sorted(hidden) if 0 < vals[c] < k]
    for c in bounded_below_k(vals, equations, hidden, k, floor, small):
        problems.append(f"hidden cell {c} is proved to be under {k} by the published cells and the floors")
    return problems
