"""The SubLink merger tree of the mock TNG universe (``tree_extended.0.hdf5``).

One tree per galaxy with log10 M* >= ``tree_min_log_mstar`` at z = 0, from snapshot 99
back to ``tree_first_snap``: its main progenitor branch, then one branch per accreted
progenitor (the galaxies that brought its ex-situ stars), ending one snapshot before
its merger. Rows are in SubLink's depth-first order (a subhalo, its first progenitor's
subtree, then its next progenitors'), so that a subtree is the row range
``[SubhaloID, LastProgenitorID]`` and a main branch ``[SubhaloID, MainLeafProgenitorID]``,
as ``illustris_python.sublink.loadTree`` reads them. ``SubhaloID = TreeID + row in
tree``; ``SubhaloIDRaw = SnapNum * 1e12 + SubfindID``.

At a written snapshot a main-branch row copies the group catalog's values; elsewhere
the catalog fields follow from the mock's particles (stellar mass formed or accreted by
then, DM mass growing as exp(-0.8 z)), with positions drifted along the velocities.
The FoF links (``FirstSubhaloInFOFGroupID``, ``NextSubhaloInFOFGroupID``) point at the row
itself and -1: the mock's trees are per galaxy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from galforge.archives.tng_layout import SUBLINK_CATALOG_FIELDS, SUBLINK_FIELDS, field_spec
from galforge.mock.tng.model import H, Universe
from galforge.mock.tng.particles import SNAP_SCALE_FACTORS, Progenitors, Stars
from galforge.mock.tng.settings import MockTNGSettings
from galforge.mock.tng.snapshot import SnapshotData, subfind_ids

__all__ = ["Tree", "build_tree"]

#: TreeID of the n-th tree: (n + 1) * TREE_ID_STEP (room for that many rows per tree).
TREE_ID_STEP = 10**8


@dataclass
class Tree:
    """The rows of ``tree_extended.0.hdf5`` and where each galaxy's main branch lies."""

    fields: dict[str, np.ndarray]
    main_row: dict[int, np.ndarray]  # snapshot -> row of each galaxy's main node (-1: none)

    @property
    def n_rows(self) -> int:
        return len(self.fields["SubhaloID"])


def build_tree(u: Universe, stars: Stars, progs: Progenitors, snaps: dict[int, SnapshotData],
               s: MockTNGSettings) -> Tree:
    """The SubLink rows of every galaxy above ``s.tree_min_log_mstar`` (see the module)."""
    first = s.tree_first_snap
    in_tree = np.flatnonzero(np.log10(u.gal_mstar) >= s.tree_min_log_mstar)
    by_gal: dict[int, list[int]] = {}
    for p in np.argsort(progs.merger_snap, kind="stable"):
        if progs.merger_snap[p] - 1 >= first:
            by_gal.setdefault(int(progs.gal[p]), []).append(int(p))
    r_gal, r_prog, r_snap, r_tree, r_pos = [], [], [], [], []
    links: list[tuple[np.ndarray, ...]] = []
    start = 0
    main_row = {snap: np.full(u.n_galaxies, -1, dtype=np.int64) for snap in snaps}
    for t, g in enumerate(in_tree):
        chain = np.arange(99, first - 1, -1)
        pieces_snap = [chain]
        pieces_prog = [np.full(len(chain), -1)]
        branch_at: list[tuple[int, int, int]] = []  # (merger snap, first row, last row)
        row = len(chain)
        for p in by_gal.get(int(g), []):
            m = int(progs.merger_snap[p])
            b = np.arange(m - 1, max(int(progs.first_snap[p]), first) - 1, -1)
            if len(b) == 0:
                continue
            branch_at.append((m, row, row + len(b) - 1))
            pieces_snap.append(b)
            pieces_prog.append(np.full(len(b), p))
            row += len(b)
        n = row
        snap_of = np.concatenate(pieces_snap)
        prog_of = np.concatenate(pieces_prog)
        tid = (t + 1) * TREE_ID_STEP
        ids = tid + np.arange(n, dtype=np.int64)
        first_prog = np.full(n, -1, dtype=np.int64)
        next_prog = np.full(n, -1, dtype=np.int64)
        desc = np.full(n, -1, dtype=np.int64)
        last_prog = np.empty(n, dtype=np.int64)
        main_leaf = np.empty(n, dtype=np.int64)
        lm = len(chain)
        first_prog[: lm - 1] = ids[1:lm]
        desc[1:lm] = ids[: lm - 1]
        main_leaf[:lm] = ids[lm - 1]
        # a main node's subtree: the main chain below it and every branch merging at or below it
        last_prog[:lm] = ids[lm - 1]
        for m, b0, b1 in branch_at:
            last_prog[:lm][chain >= m] = np.maximum(last_prog[:lm][chain >= m], ids[b1])
            first_prog[b0: b1] = ids[b0 + 1: b1 + 1]
            desc[b0 + 1: b1 + 1] = ids[b0: b1]
            desc[b0] = ids[99 - m]  # the main node it merges into
            last_prog[b0: b1 + 1] = ids[b1]
            main_leaf[b0: b1 + 1] = ids[b1]
        # next progenitors: siblings among the children of each main node
        children: dict[int, list[int]] = {}
        for m, b0, _ in branch_at:
            children.setdefault(m, [99 - m + 1]).append(b0)
        for kids in children.values():
            for x, y in zip(kids[:-1], kids[1:], strict=True):
                next_prog[x] = ids[y]
        links.append((ids, np.full(n, tid, dtype=np.int64), first_prog, next_prog, desc,
                      last_prog, main_leaf, np.full(n, ids[0], dtype=np.int64)))
        r_gal.append(np.full(n, g))
        r_prog.append(prog_of)
        r_snap.append(snap_of)
        r_tree.append(np.full(n, t))
        r_pos.append(start + np.arange(n))
        for snap in snaps:
            if snap >= first:
                main_row[snap][g] = start + (99 - snap)
        start += n
    if not in_tree.size:
        return Tree(fields=_empty_fields(), main_row=main_row)
    gal = np.concatenate(r_gal)
    prog = np.concatenate(r_prog)
    snap = np.concatenate(r_snap)
    cols = [np.concatenate(c) for c in zip(*links, strict=True)]
    fields = dict(zip(("SubhaloID", "TreeID", "FirstProgenitorID", "NextProgenitorID",
                       "DescendantID", "LastProgenitorID", "MainLeafProgenitorID",
                       "RootDescendantID"), cols, strict=True))
    fields.update(_catalog_columns(u, stars, progs, snaps, gal, prog, snap))
    fields["SnapNum"] = snap
    fields["FirstSubhaloInFOFGroupID"] = fields["SubhaloID"].copy()
    fields["NextSubhaloInFOFGroupID"] = np.full(len(snap), -1, dtype=np.int64)
    fields["Mass"] = fields["SubhaloMass"].astype(np.float32)
    fields["NumParticles"] = fields["SubhaloLen"].astype(np.uint32)
    fields["MassHistory"] = _mass_history(fields)
    out = {k: np.asarray(fields[k]).astype(dt) for k, dt in SUBLINK_FIELDS.items()}
    out.update({k: np.asarray(fields[k]).astype(field_spec(k)[0]) for k in SUBLINK_CATALOG_FIELDS})
    return Tree(fields=dict(sorted(out.items())), main_row=main_row)


def _empty_fields() -> dict[str, np.ndarray]:
    out = {k: np.zeros(0, dtype=dt) for k, dt in SUBLINK_FIELDS.items()}
    for k in SUBLINK_CATALOG_FIELDS:
        dt, shape = field_spec(k)
        out[k] = np.zeros((0, *shape), dtype=dt)
    return dict(sorted(out.items()))


def _mass_history(f: dict[str, np.ndarray]) -> np.ndarray:
    """SubLink's MassHistory: the mass of a subhalo and of all its progenitors."""
    mh = f["SubhaloMass"].astype(np.float64).copy()
    # rows are depth-first within each tree: a descendant always precedes its progenitors
    tree_start = np.arange(len(mh)) - (f["SubhaloID"] - f["TreeID"])
    desc = f["DescendantID"]
    target = np.where(desc >= 0, tree_start + (desc - f["TreeID"]), -1)
    for i in range(len(mh) - 1, -1, -1):
        if target[i] >= 0:
            mh[target[i]] += mh[i]
    return mh.astype(np.float32)


def _catalog_columns(u: Universe, stars: Stars, progs: Progenitors,
                     snaps: dict[int, SnapshotData], gal: np.ndarray, prog: np.ndarray,
                     snap: np.ndarray) -> dict[str, np.ndarray]:
    n = len(gal)
    out: dict[str, np.ndarray] = {}
    for k in SUBLINK_CATALOG_FIELDS:
        dt, shape = field_spec(k)
        out[k] = np.zeros((n, *shape), dtype=np.float64 if dt.startswith("<f") else np.int64)
    main = prog < 0
    z = 1.0 / SNAP_SCALE_FACTORS[snap] - 1.0
    # stellar mass and star particles formed (main: in-situ formed + ex-situ accreted) by then
    non_wind = ~stars.wind
    sf = stars.snap_form.astype(np.int64)
    acc = np.where(stars.prog >= 0, progs.merger_snap[np.maximum(stars.prog, 0)], sf)
    when_main = np.where(stars.in_situ, sf, acc)
    m_main = np.zeros((u.n_galaxies, 100))
    n_main = np.zeros((u.n_galaxies, 100))
    np.add.at(m_main, (stars.gal[non_wind], np.clip(when_main[non_wind], 0, 99)),
              stars.mass[non_wind])
    np.add.at(n_main, (stars.gal[non_wind], np.clip(when_main[non_wind], 0, 99)), 1)
    m_main, n_main = np.cumsum(m_main, axis=1), np.cumsum(n_main, axis=1)
    ex = stars.prog >= 0
    m_prog = np.zeros((len(progs.gal), 100))
    n_prog = np.zeros((len(progs.gal), 100))
    np.add.at(m_prog, (stars.prog[ex], np.clip(sf[ex], 0, 99)), stars.mass[ex])
    np.add.at(n_prog, (stars.prog[ex], np.clip(sf[ex], 0, 99)), 1)
    m_prog, n_prog = np.cumsum(m_prog, axis=1), np.cumsum(n_prog, axis=1)
    growth = np.exp(-0.8 * z)
    p = np.maximum(prog, 0)
    mstar = np.where(main, m_main[gal, snap], m_prog[p, snap])
    nstar = np.where(main, n_main[gal, snap], n_prog[p, snap])
    n_dm = np.where(main, np.rint(u.gal_n_dm[gal] * growth), np.rint(50.0 * mstar / u.m_dm))
    out["SubhaloLenType"][:, 4] = nstar
    out["SubhaloLenType"][:, 1] = n_dm
    out["SubhaloMassType"][:, 4] = mstar
    out["SubhaloMassType"][:, 1] = n_dm * u.m_dm
    out["SubhaloLen"] = out["SubhaloLenType"].sum(axis=1)
    out["SubhaloMass"] = out["SubhaloMassType"].sum(axis=1)
    rng = np.random.default_rng(len(gal))
    away = rng.standard_normal((len(progs.gal), 3))
    away *= 200.0 / np.linalg.norm(away, axis=1, keepdims=True)
    dt_pos = (99 - snap)[:, None] * 0.14  # ~Gyr per snapshot near z = 0
    pos = u.gal_pos[gal] - u.gal_vel[gal] * dt_pos * 1.0227 * H
    pos = pos + np.where(main[:, None], 0.0, away[p] * (progs.merger_snap[p] - snap)[:, None] / 5)
    out["SubhaloPos"] = np.mod(pos, u.box)
    out["SubhaloVel"] = u.gal_vel[gal]
    out["SubhaloHalfmassRadType"][:, 4] = np.where(main, u.gal_r_in[gal], u.gal_r_ex[gal]) * H
    out["SubhaloGrNr"] = np.where(main, u.gal_halo[gal], u.n_halos + p)
    out["SubhaloSFR"][:] = 0.0
    out["Group_M_Crit200"] = np.where(main, u.halo_m200[u.gal_halo[gal]] / 1e10 * growth,
                                      out["SubhaloMass"])
    out["GroupMass"] = 1.2 * out["Group_M_Crit200"]
    out["GroupNsubs"][:] = 1
    sid = np.empty(n, dtype=np.int64)
    sub_gal_by_snap = {k: v.sub_gal for k, v in snaps.items()}
    for sn in np.unique(snap):
        sel = snap == sn
        ids = subfind_ids(sub_gal_by_snap, u.n_galaxies, int(sn))
        sid[sel] = np.where(main[sel], ids[gal[sel]], u.n_galaxies + p[sel])
        if int(sn) in snaps:  # main rows at written snapshots: the catalog itself
            data = snaps[int(sn)]
            rows = sel & main
            sub = sid[rows]
            for k in SUBLINK_CATALOG_FIELDS:
                table = data.subhalo if k.startswith("Subhalo") else data.group
                index = sub if k.startswith("Subhalo") else data.subhalo["SubhaloGrNr"][sub]
                out[k][rows] = table[k][index]
    out["GroupFirstSub"] = np.where(main, sid, sid)
    for sn in snaps:
        rows = (snap == sn) & main
        data = snaps[sn]
        out["GroupFirstSub"][rows] = data.group["GroupFirstSub"][data.subhalo["SubhaloGrNr"][
            sid[rows]]]
    out["SubfindID"] = sid
    out["SubhaloIDRaw"] = snap.astype(np.int64) * 10**12 + sid
    return out
