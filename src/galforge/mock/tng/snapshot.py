"""One snapshot of the mock TNG universe, in the order and units of the real files.

:func:`build_snapshot` places the particles of :mod:`galforge.mock.tng.particles` at
snapshot ``S`` (code units: ckpc/h, 1e10 Msun/h, sqrt(a) km/s), orders them as Subfind
does (groups by decreasing length; in each group its central subhalo, its satellites by
decreasing length, then the group's fuzz; particles outside every group last), and
computes the group catalog, the offsets and the stellar-assembly rows from them.

At snapshot S a galaxy holds its in-situ stars formed by S (``SnapNumAtFormation <= S``),
all its ex-situ stars (every merger happens by the earliest snapshot written) and its
wind particles; galaxies drift back from z = 0 along their velocities; internal
structure is fixed in physical kpc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from galforge.archives.tng_layout import GROUP_FIELDS, SUBHALO_FIELDS, cosmic_time, field_spec
from galforge.mock.tng.model import G_NEWTON, H, Universe, r200_kpc_h
from galforge.mock.tng.particles import (
    SNAP_SCALE_FACTORS,
    T_NOW,
    DarkMatter,
    Progenitors,
    Stars,
    drift_kpc,
    nfw_potential,
)

__all__ = ["SnapshotData", "build_snapshot", "subfind_ids"]

#: Metal mass fractions of GFM_Metals (H, He, C, N, O, Ne, Mg, Si, Fe, other) per unit Z.
METAL_SHARES = np.array([0.18, 0.05, 0.45, 0.10, 0.05, 0.06, 0.09])
#: Photometric bands of GFM_StellarPhotometrics and their colour offsets from r (old stars).
BAND_OFFSETS = np.array([1.9, 1.0, 0.45, -2.3, 0.7, 0.0, -0.35, -0.55])  # U B V K g r i z


@dataclass
class SnapshotData:
    """Everything the files of one snapshot hold (catalog order, file order)."""

    snap: int
    redshift: float
    a: float
    parts: dict[int, dict[str, np.ndarray]]  # PartType1 and PartType4 in file order
    sub_gal: np.ndarray  # galaxy of each subhalo (catalog order)
    group_halo: np.ndarray  # halo of each group (catalog order)
    subhalo: dict[str, np.ndarray]
    group: dict[str, np.ndarray]
    sub_offset: np.ndarray  # (n_sub, 6) first particle of each subhalo per type
    group_offset: np.ndarray  # (n_group, 6)
    assembly_stars: dict[str, np.ndarray]  # per PartType4 row
    assembly_galaxies: dict[str, np.ndarray]  # per subhalo
    star_index: np.ndarray  # index into Stars of each PartType4 row
    dm_index: np.ndarray  # index into DarkMatter of each PartType1 row

    @property
    def n_sub(self) -> int:
        return len(self.sub_gal)

    @property
    def n_group(self) -> int:
        return len(self.group_halo)


def subfind_ids(sub_gal_by_snap: dict[int, np.ndarray], n_gal: int, snap: int) -> np.ndarray:
    """SubfindID of every galaxy at ``snap``: its catalog index at a written snapshot, its
    galaxy index at any other (progenitor branches get ``n_gal + progenitor index``)."""
    if snap in sub_gal_by_snap:
        ids = np.empty(n_gal, dtype=np.int64)
        ids[sub_gal_by_snap[snap]] = np.arange(len(sub_gal_by_snap[snap]))
        return ids
    return np.arange(n_gal, dtype=np.int64)


def _wrap(x: np.ndarray, box: float) -> np.ndarray:
    return np.mod(x, box)


def _nearest(d: np.ndarray, box: float) -> np.ndarray:
    return d - box * np.rint(d / box)


def build_snapshot(u: Universe, stars: Stars, progs: Progenitors, dm: DarkMatter, snap: int,
                   seed: int) -> SnapshotData:
    """Place, order and summarise the universe at TNG snapshot ``snap``."""
    a = float(SNAP_SCALE_FACTORS[snap])
    z = 1.0 / a - 1.0 if snap != 99 else 2.220446049250313e-16
    dt = T_NOW - float(cosmic_time(a))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 14, 2, snap]))
    box = u.box
    gal_pos = _wrap(u.gal_pos - drift_kpc(u.gal_vel, dt) * H, box)
    halo_pos = _wrap(u.halo_pos - drift_kpc(u.halo_vel, dt) * H, box)

    # particles present at this snapshot
    present = stars.wind | ~stars.in_situ | (stars.snap_form <= snap)
    if np.any(~stars.in_situ & ~stars.wind & (stars.snap_form > snap)):
        raise ValueError(f"snapshot {snap} precedes a merger: write it with merger_snap_min <= "
                         "the earliest snapshot")
    s_idx = np.flatnonzero(present)
    n_star_g = np.bincount(stars.gal[s_idx], minlength=u.n_galaxies)
    n_dm_g = u.gal_n_dm
    sub_len = n_star_g + n_dm_g
    group_len = np.bincount(u.gal_halo, weights=sub_len, minlength=u.n_halos).astype(np.int64)
    group_len += u.halo_n_fuzz
    # catalog order: groups by decreasing length, in a group the central then satellites
    group_halo = np.lexsort((np.arange(u.n_halos), -group_len))
    g_rank = np.empty(u.n_halos, dtype=np.int64)
    g_rank[group_halo] = np.arange(u.n_halos)
    sub_gal = np.lexsort((np.arange(u.n_galaxies), -sub_len, ~u.gal_central, g_rank[u.gal_halo]))
    s_rank = np.empty(u.n_galaxies, dtype=np.int64)
    s_rank[sub_gal] = np.arange(u.n_galaxies)

    # particle order in the files: by group, subhalo (fuzz after the group's subhaloes),
    # then shuffled within each subhalo; outside every group last
    big = np.int64(u.n_galaxies + 1)
    key_s = np.lexsort((rng.random(len(s_idx)), s_rank[stars.gal[s_idx]],
                        g_rank[u.gal_halo[stars.gal[s_idx]]]))
    star_index = s_idx[key_s]
    dm_group = np.where(dm.halo >= 0, g_rank[np.maximum(dm.halo, 0)], u.n_halos)
    dm_sub = np.where(dm.gal >= 0, s_rank[np.maximum(dm.gal, 0)], big)
    dm_index = np.lexsort((rng.random(len(dm.gal)), dm_sub, dm_group))

    st = _star_fields(u, stars, star_index, gal_pos, halo_pos, a)
    dmf = _dm_fields(u, dm, dm_index, gal_pos, halo_pos, a)
    parts = {1: dmf, 4: st}
    # ownership in file order (catalog indices; -1 = fuzz / no group)
    own = {4: s_rank[stars.gal[star_index]],
           1: np.where(dm.gal[dm_index] >= 0, s_rank[np.maximum(dm.gal[dm_index], 0)], -1)}
    grp = {4: g_rank[u.gal_halo[stars.gal[star_index]]],
           1: np.where(dm.halo[dm_index] >= 0, g_rank[np.maximum(dm.halo[dm_index], 0)], -1)}
    n_sub, n_grp = u.n_galaxies, u.n_halos
    sub_offset = np.zeros((n_sub, 6), dtype=np.int64)
    group_offset = np.zeros((n_grp, 6), dtype=np.int64)
    for t in (1, 4):
        counts = np.bincount(own[t][own[t] >= 0], minlength=n_sub)
        gcounts = np.bincount(grp[t][grp[t] >= 0], minlength=n_grp)
        gstart = np.concatenate([[0], np.cumsum(gcounts)[:-1]])
        group_offset[:, t] = gstart
        # subhaloes are contiguous from their group's start, in catalog order
        sub_group = g_rank[u.gal_halo[sub_gal]]
        before = np.concatenate([[0], np.cumsum(counts)[:-1]])
        first_sub_of_group = np.searchsorted(sub_group, np.arange(n_grp))
        sub_offset[:, t] = gstart[sub_group] + before - before[first_sub_of_group[sub_group]]

    centre = gal_pos[sub_gal]
    subhalo, group = _catalog(u, parts, own, grp, sub_gal, group_halo, centre, halo_pos, a, box)
    sa_stars, sa_gal = _assembly(u, stars, progs, star_index, s_rank, own[4], snap, n_sub)
    return SnapshotData(snap=snap, redshift=z, a=a, parts=parts, sub_gal=sub_gal,
                        group_halo=group_halo, subhalo=subhalo, group=group,
                        sub_offset=sub_offset, group_offset=group_offset,
                        assembly_stars=sa_stars, assembly_galaxies=sa_gal,
                        star_index=star_index, dm_index=dm_index)


def _potential(u: Universe, pos_halo_kpc: np.ndarray, halo: np.ndarray, pos_gal_kpc: np.ndarray,
               gal: np.ndarray) -> np.ndarray:
    """Host NFW potential plus, for satellites' particles, their own subhalo's [(km/s)^2]."""
    phi = nfw_potential(np.linalg.norm(pos_halo_kpc, axis=1), u.halo_m200[halo],
                        u.halo_r200[halo] / H, u.halo_conc[halo])
    sat = (gal >= 0) & ~u.gal_central[np.maximum(gal, 0)]
    if np.any(sat):
        g = gal[sat]
        m_sub = u.gal_n_dm[g] * u.m_dm * 1e10 + u.gal_n_star[g] * u.gal_mpart[g] * 1e10
        r_sub = 0.3 * r200_kpc_h(u.gal_m_infall[g]) / H
        phi[sat] += nfw_potential(np.linalg.norm(pos_gal_kpc[sat], axis=1), m_sub + 1.0,
                                  r_sub, np.full(len(g), 10.0))
    return phi


def _star_fields(u: Universe, stars: Stars, idx: np.ndarray, gal_pos: np.ndarray,
                 halo_pos: np.ndarray, a: float) -> dict[str, np.ndarray]:
    gal = stars.gal[idx]
    halo = u.gal_halo[gal]
    off = stars.offset[idx]
    pos = _wrap(gal_pos[gal] + off * H / a, u.box)
    vel = (u.gal_vel[gal] + stars.velocity[idx]) / math.sqrt(a)
    to_halo = _nearest(pos - halo_pos[halo], u.box) * a / H
    phi = _potential(u, to_halo, halo, off, gal)
    zmet = stars.metallicity[idx].astype(np.float64)
    metals = np.empty((len(idx), 10))
    metals[:, 0] = 0.76 * (1.0 - zmet) - 0.01
    metals[:, 1] = 1.0 - metals[:, 0] - zmet
    metals[:, 2:9] = zmet[:, None] * METAL_SHARES[None, :]
    metals[:, 9] = zmet * (1.0 - METAL_SHARES.sum())
    return {
        "BirthPos": pos.astype(np.float32),
        "BirthVel": vel.astype(np.float32),
        "Coordinates": pos,
        "GFM_InitialMass": stars.initial_mass[idx],
        "GFM_Metallicity": stars.metallicity[idx],
        "GFM_Metals": metals.astype(np.float32),
        "GFM_StellarFormationTime": stars.formation_a[idx],
        "GFM_StellarPhotometrics": _photometrics(stars, idx, a).astype(np.float32),
        "Masses": stars.mass[idx].astype(np.float32),
        "ParticleIDs": stars.ids[idx],
        "Potential": (phi * a).astype(np.float32),
        "Velocities": vel.astype(np.float32),
    }


def _photometrics(stars: Stars, idx: np.ndarray, a_snap: float) -> np.ndarray:
    """Absolute magnitudes (U B V K g r i z) of each star particle: M/L_r = 0.3 (age/Gyr)^0.8."""
    a = np.clip(stars.formation_a[idx].astype(np.float64), 1e-3, 1.0)
    age = np.clip(cosmic_time(a_snap) - cosmic_time(a), 0.01, None)
    m_msun = stars.initial_mass[idx].astype(np.float64) * 1e10 / H
    mag_r = 4.65 - 2.5 * np.log10(m_msun / (0.3 * age**0.8))
    redden = 0.4 + 0.6 * np.clip(age / 10.0, 0.0, 1.0)
    return mag_r[:, None] + BAND_OFFSETS[None, :] * redden[:, None]


def _dm_fields(u: Universe, dm: DarkMatter, idx: np.ndarray, gal_pos: np.ndarray,
               halo_pos: np.ndarray, a: float) -> dict[str, np.ndarray]:
    gal, halo = dm.gal[idx], dm.halo[idx]
    off = dm.offset[idx]
    in_sub = gal >= 0
    fuzz = (gal < 0) & (halo >= 0)
    outer = halo < 0
    pos = np.empty((len(idx), 3))
    vel = np.empty((len(idx), 3))
    pos[in_sub] = gal_pos[gal[in_sub]] + off[in_sub] * H / a
    vel[in_sub] = u.gal_vel[gal[in_sub]] + dm.velocity[idx][in_sub]
    pos[fuzz] = halo_pos[halo[fuzz]] + off[fuzz] * H / a
    vel[fuzz] = u.halo_vel[halo[fuzz]] + dm.velocity[idx][fuzz]
    pos[outer] = off[outer]
    vel[outer] = dm.velocity[idx][outer]
    pos = _wrap(pos, u.box)
    phi = np.full(len(idx), -100.0)
    grouped = ~outer
    h = halo[grouped]
    to_halo = _nearest(pos[grouped] - halo_pos[h], u.box) * a / H
    phi[grouped] = _potential(u, to_halo, h, off[grouped], gal[grouped])
    return {
        "Coordinates": pos,
        "ParticleIDs": dm.ids[idx],
        "Potential": (phi * a).astype(np.float32),
        "Velocities": (vel / math.sqrt(a)).astype(np.float32),
    }


# ------------------------------------------------------------------------------------------
# Group catalog
# ------------------------------------------------------------------------------------------


def _segment_radius(owner: np.ndarray, r: np.ndarray, m: np.ndarray, n: int, frac: float
                    ) -> np.ndarray:
    """Per owner, the radius enclosing ``frac`` of its mass (0 for owners without particles)."""
    out = np.zeros(n)
    if len(owner) == 0:
        return out
    order = np.lexsort((r, owner))
    o, rs, ms = owner[order], r[order], m[order]
    cum = np.cumsum(ms)
    start = np.searchsorted(o, np.arange(n))
    end = np.searchsorted(o, np.arange(n), side="right")
    has = end > start
    base = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    total = cum[np.maximum(end - 1, 0)] - base
    target = base + frac * total
    pos = np.searchsorted(cum, target[has] * (1 - 1e-12), side="left")
    out[has] = rs[np.minimum(pos, end[has] - 1)]
    return out


def _vmax(owner: np.ndarray, r_kpc: np.ndarray, m_msun: np.ndarray, n: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """Per owner: max sqrt(G M(<r) / r) [km/s] and the radius of the maximum [kpc]."""
    vmax, rmax = np.zeros(n), np.zeros(n)
    if len(owner) == 0:
        return vmax, rmax
    order = np.lexsort((r_kpc, owner))
    o, rs, ms = owner[order], np.maximum(r_kpc[order], 1e-3), m_msun[order]
    cum = np.cumsum(ms)
    start = np.searchsorted(o, np.arange(n))
    base = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    v = np.sqrt(G_NEWTON * (cum - base[o]) / rs)
    best = np.zeros(n)
    np.maximum.at(best, o, v)
    vmax[:] = best
    is_best = v >= best[o] * (1 - 1e-12)
    where = np.full(n, len(o))
    np.minimum.at(where, o[is_best], np.flatnonzero(is_best))
    ok = where < len(o)
    rmax[ok] = rs[where[ok]]
    return vmax, rmax


def _empty(table: dict[str, tuple[str, tuple[int, ...]]], n: int) -> dict[str, np.ndarray]:
    return {k: np.zeros((n, *shape), dtype=dt) for k, (dt, shape) in table.items()}


def _catalog(u: Universe, parts: dict[int, dict[str, np.ndarray]], own: dict[int, np.ndarray],
             grp: dict[int, np.ndarray], sub_gal: np.ndarray, group_halo: np.ndarray,
             centre: np.ndarray, halo_pos: np.ndarray, a: float, box: float
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n_sub, n_grp = len(sub_gal), len(group_halo)
    sub, grpf = _empty(SUBHALO_FIELDS, n_sub), _empty(GROUP_FIELDS, n_grp)
    mass = {1: np.full(len(own[1]), u.m_dm), 4: parts[4]["Masses"].astype(np.float64)}
    rel = {}  # per type, particles in subhaloes: (owner, offset from centre [ckpc/h], mass)
    for t in (1, 4):
        keep = own[t] >= 0
        o = own[t][keep]
        d = _nearest(parts[t]["Coordinates"][keep] - centre[o], box)
        rel[t] = (o, d, mass[t][keep], np.flatnonzero(keep))
        sub["SubhaloLenType"][:, t] = np.bincount(o, minlength=n_sub)
        sub["SubhaloMassType"][:, t] = np.bincount(o, weights=mass[t][keep], minlength=n_sub)
        r = np.linalg.norm(d, axis=1)
        sub["SubhaloHalfmassRadType"][:, t] = _segment_radius(o, r, mass[t][keep], n_sub, 0.5)
        gk = grp[t] >= 0
        grpf["GroupLenType"][:, t] = np.bincount(grp[t][gk], minlength=n_grp)
        grpf["GroupMassType"][:, t] = np.bincount(grp[t][gk], weights=mass[t][gk], minlength=n_grp)
    sub["SubhaloLen"] = sub["SubhaloLenType"].sum(axis=1).astype(np.int32)
    sub["SubhaloMass"] = sub["SubhaloMassType"].sum(axis=1).astype(np.float32)
    grpf["GroupLen"] = grpf["GroupLenType"].sum(axis=1).astype(np.int32)
    grpf["GroupMass"] = grpf["GroupMassType"].sum(axis=1).astype(np.float32)

    # all particles of each subhalo together
    o_all = np.concatenate([rel[1][0], rel[4][0]])
    d_all = np.concatenate([rel[1][1], rel[4][1]])
    m_all = np.concatenate([rel[1][2], rel[4][2]])
    v_all = np.concatenate([parts[1]["Velocities"][rel[1][3]],
                            parts[4]["Velocities"][rel[4][3]]]).astype(np.float64) * math.sqrt(a)
    r_all = np.linalg.norm(d_all, axis=1)
    msum = np.maximum(np.bincount(o_all, weights=m_all, minlength=n_sub), 1e-30)
    sub["SubhaloHalfmassRad"] = _segment_radius(o_all, r_all, m_all, n_sub, 0.5)
    cm = np.stack([np.bincount(o_all, weights=m_all * d_all[:, i], minlength=n_sub) for i in
                   range(3)], axis=1) / msum[:, None]
    sub["SubhaloCM"] = _wrap(centre + cm, box)
    vbar = np.stack([np.bincount(o_all, weights=m_all * v_all[:, i], minlength=n_sub) for i in
                     range(3)], axis=1) / msum[:, None]
    sub["SubhaloVel"] = vbar
    dv = v_all - vbar[o_all]
    sub["SubhaloVelDisp"] = np.sqrt(np.bincount(o_all, weights=m_all * (dv**2).sum(axis=1),
                                                minlength=n_sub) / (3.0 * msum))
    spin = np.cross(d_all * a, dv)  # (kpc/h)(km/s), physical
    sub["SubhaloSpin"] = np.stack([np.bincount(o_all, weights=m_all * spin[:, i], minlength=n_sub)
                                   for i in range(3)], axis=1) / msum[:, None]
    vmax, rmax = _vmax(o_all, r_all * a / H, m_all * 1e10 / H, n_sub)
    sub["SubhaloVmax"] = vmax
    sub["SubhaloVmaxRad"] = rmax * H / a
    sub["SubhaloPos"] = centre
    grp_of_sub = _group_of_subhalo(u, sub_gal, group_halo)
    sub["SubhaloGrNr"] = grp_of_sub
    sub["SubhaloParent"][:] = 0
    sub["SubhaloFlag"][:] = True
    pot = np.concatenate([parts[1]["Potential"][rel[1][3]], parts[4]["Potential"][rel[4][3]]])
    ids = np.concatenate([parts[1]["ParticleIDs"][rel[1][3]], parts[4]["ParticleIDs"][rel[4][3]]])
    order = np.lexsort((pot, o_all))
    first = np.searchsorted(o_all[order], np.arange(n_sub))
    has = sub["SubhaloLen"] > 0
    sub["SubhaloIDMostbound"][has] = ids[order][first[has]]

    # apertures: half the stellar half-mass radius (InHalfRad), twice it (InRad), Vmax radius
    rh = sub["SubhaloHalfmassRadType"][:, 4].astype(np.float64)
    for name, radius in (("InHalfRad", rh), ("InRad", 2.0 * rh),
                         ("InMaxRad", sub["SubhaloVmaxRad"].astype(np.float64))):
        for t in (1, 4):
            o, d, m, _ = rel[t]
            inside = np.linalg.norm(d, axis=1) < radius[o]
            sub[f"SubhaloMass{name}Type"][:, t] = np.bincount(o[inside], weights=m[inside],
                                                             minlength=n_sub)
        sub[f"SubhaloMass{name}"] = sub[f"SubhaloMass{name}Type"].sum(axis=1)

    # stars: metallicities, SFR (stars younger than 100 Myr), photometry, winds
    o4, d4, m4, k4 = rel[4]
    form = parts[4]["GFM_StellarFormationTime"][k4].astype(np.float64)
    wind = form <= 0
    star = ~wind
    zmet = parts[4]["GFM_Metallicity"][k4].astype(np.float64)
    metals = parts[4]["GFM_Metals"][k4].astype(np.float64)
    r4 = np.linalg.norm(d4, axis=1)
    for suffix, radius in (("", np.inf), ("HalfRad", rh), ("MaxRad", sub["SubhaloVmaxRad"])):
        sel = star & (r4 < np.broadcast_to(np.asarray(radius, dtype=float), (n_sub,))[o4])
        msel = np.maximum(np.bincount(o4[sel], weights=m4[sel], minlength=n_sub), 1e-30)
        sub[f"SubhaloStarMetallicity{suffix}"] = np.bincount(
            o4[sel], weights=m4[sel] * zmet[sel], minlength=n_sub) / msel
        sub[f"SubhaloStarMetalFractions{suffix}"] = np.stack(
            [np.bincount(o4[sel], weights=m4[sel] * metals[sel, i], minlength=n_sub)
             for i in range(10)], axis=1) / msel[:, None]
    age = T_NOW - cosmic_time(np.clip(form, 1e-3, 1.0)) - (T_NOW - cosmic_time(a))
    young = star & (age < 0.1) & (age >= 0.0)
    sfr_w = m4 * 1e10 / H / 1e8
    for suffix, radius in (("", np.inf), ("inHalfRad", rh), ("inRad", 2.0 * rh),
                           ("inMaxRad", sub["SubhaloVmaxRad"])):
        sel = young & (r4 < np.broadcast_to(np.asarray(radius, dtype=float), (n_sub,))[o4])
        sub[f"SubhaloSFR{suffix}"] = np.bincount(o4[sel], weights=sfr_w[sel], minlength=n_sub)
    sub["SubhaloWindMass"] = np.bincount(o4[wind], weights=m4[wind], minlength=n_sub)
    lum = 10.0 ** (-0.4 * parts[4]["GFM_StellarPhotometrics"][k4].astype(np.float64))
    tot = np.stack([np.bincount(o4[star], weights=lum[star, i], minlength=n_sub)
                    for i in range(8)], axis=1)
    with np.errstate(divide="ignore"):
        sub["SubhaloStellarPhotometrics"] = np.where(tot > 0, -2.5 * np.log10(tot), 99.0)
    sub["SubhaloStellarPhotometricsRad"] = 2.0 * rh
    inside = star & (r4 < 2.0 * rh[o4])
    sub["SubhaloStellarPhotometricsMassInRad"] = np.bincount(o4[inside], weights=m4[inside],
                                                             minlength=n_sub)

    # groups
    hal = group_halo
    first_sub = np.searchsorted(grp_of_sub, np.arange(n_grp))
    nsubs = np.bincount(grp_of_sub, minlength=n_grp)
    grpf["GroupFirstSub"] = np.where(nsubs > 0, first_sub, -1)
    grpf["GroupNsubs"] = nsubs
    grpf["GroupPos"] = halo_pos[hal]
    gm = np.maximum(grpf["GroupMass"].astype(np.float64), 1e-30)
    gcm = np.zeros((n_grp, 3))
    gvel = np.zeros((n_grp, 3))
    for t in (1, 4):
        gk = grp[t] >= 0
        g = grp[t][gk]
        d = _nearest(parts[t]["Coordinates"][gk] - halo_pos[hal][g], box)
        v = parts[t]["Velocities"][gk].astype(np.float64) * math.sqrt(a)
        m = mass[t][gk]
        for i in range(3):
            gcm[:, i] += np.bincount(g, weights=m * d[:, i], minlength=n_grp)
            gvel[:, i] += np.bincount(g, weights=m * v[:, i], minlength=n_grp)
    grpf["GroupCM"] = _wrap(halo_pos[hal] + gcm / gm[:, None], box)
    grpf["GroupVel"] = gvel / gm[:, None] / a  # km/s/a
    grpf["GroupSFR"] = np.bincount(grp_of_sub, weights=sub["SubhaloSFR"], minlength=n_grp)
    grpf["GroupWindMass"] = np.bincount(grp_of_sub, weights=sub["SubhaloWindMass"], minlength=n_grp)
    mstar_sub = sub["SubhaloMassType"][:, 4].astype(np.float64)
    gms = np.maximum(np.bincount(grp_of_sub, weights=mstar_sub, minlength=n_grp), 1e-30)
    grpf["GroupStarMetallicity"] = np.bincount(
        grp_of_sub, weights=mstar_sub * sub["SubhaloStarMetallicity"], minlength=n_grp) / gms
    grpf["GroupStarMetalFractions"] = np.stack(
        [np.bincount(grp_of_sub, weights=mstar_sub * sub["SubhaloStarMetalFractions"][:, i],
                     minlength=n_grp) for i in range(10)], axis=1) / gms[:, None]
    m200 = u.halo_m200[hal] / 1e10
    r200 = u.halo_r200[hal] / a  # comoving ckpc/h of the z = 0 physical radius
    for suffix, fm, fr in (("Crit200", 1.0, 1.0), ("Crit500", 0.69, 0.65),
                           ("Mean200", 1.27, 1.68), ("TopHat200", 1.2, 1.36)):
        grpf[f"Group_M_{suffix}"] = m200 * fm
        grpf[f"Group_R_{suffix}"] = r200 * fr
    subhalo = {k: np.asarray(v).astype(field_spec(k)[0]) for k, v in sub.items()}
    group = {k: np.asarray(v).astype(field_spec(k)[0]) for k, v in grpf.items()}
    return subhalo, group


def _group_of_subhalo(u: Universe, sub_gal: np.ndarray, group_halo: np.ndarray) -> np.ndarray:
    g_rank = np.empty(u.n_halos, dtype=np.int64)
    g_rank[group_halo] = np.arange(u.n_halos)
    return g_rank[u.gal_halo[sub_gal]]


# ------------------------------------------------------------------------------------------
# Stellar assembly
# ------------------------------------------------------------------------------------------


def _assembly(u: Universe, stars: Stars, progs: Progenitors, idx: np.ndarray,
              s_rank: np.ndarray, owner: np.ndarray, snap: int, n_sub: int
              ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The stars_SSS rows (file order) and galaxies_SSS rows (catalog order).

    SubfindIDAtFormation refers to the SubfindID table of the formation snapshot
    (:func:`subfind_ids`); it is filled by the caller, who knows every written snapshot.
    """
    wind = stars.wind[idx]
    insitu = stars.in_situ[idx]
    exsitu = ~insitu & ~wind
    outside = stars.formed_outside[idx]
    merged = exsitu & ~outside
    in_flag = np.where(insitu, 1, np.where(exsitu, 0, -1)).astype(np.int8)
    ratio = np.full(len(idx), -1.0, dtype=np.float32)
    ratio[merged] = progs.mass_ratio[stars.prog[idx][merged]]
    rows = {
        "ParticleID": stars.ids[idx],
        "SubfindID": owner.astype(np.int32),
        "SubfindIDAtFormation": np.full(len(idx), -1, dtype=np.int32),
        "SnapNumAtFormation": stars.snap_form[idx].astype(np.int16),
        "InSitu": in_flag,
        "AfterInfall": np.where(merged, stars.after_infall[idx], -1).astype(np.int8),
        "AccretionOrigin": np.where(merged, 0, -1).astype(np.int8),
        "MergerMassRatio": ratio,
        "DistanceAtFormation": stars.distance_at_formation[idx],
    }
    m = stars.mass[idx]
    o = owner

    def total(sel: np.ndarray) -> np.ndarray:
        # exact: every mass is a multiple of MASS_QUANTUM and every sum fits float32's mantissa
        return np.bincount(o[sel], weights=m[sel], minlength=n_sub).astype(np.float32)

    after = rows["AfterInfall"]
    major, majorminor = ratio >= 0.25, ratio >= 0.1
    none = np.zeros(len(idx), dtype=bool)
    gal = {
        "StellarMassInSitu": total(insitu),
        "StellarMassExSitu": total(exsitu),
        "StellarMassTotal": total(insitu | exsitu),
        "StellarMassBeforeInfall": total(merged & (after == 0)),
        "StellarMassAfterInfall": total(merged & (after == 1)),
        "StellarMassFormedOutsideGalaxies": total(exsitu & outside),
        "StellarMassFromCompletedMergers": total(merged),
        "StellarMassFromCompletedMergersMajor": total(merged & major),
        "StellarMassFromCompletedMergersMajorMinor": total(merged & majorminor),
        "StellarMassFromOngoingMergers": total(none),
        "StellarMassFromOngoingMergersMajor": total(none),
        "StellarMassFromOngoingMergersMajorMinor": total(none),
        "StellarMassFromFlybys": total(none),
        "StellarMassFromFlybysMajor": total(none),
        "StellarMassFromFlybysMajorMinor": total(none),
    }
    return rows, gal


def formation_subfind_ids(stars: Stars, progs: Progenitors, idx: np.ndarray, n_gal: int,
                          sub_gal_by_snap: dict[int, np.ndarray]) -> np.ndarray:
    """SubfindIDAtFormation of the PartType4 rows ``idx`` (-1: winds, formed outside)."""
    out = np.full(len(idx), -1, dtype=np.int64)
    snap_form = stars.snap_form[idx].astype(np.int64)
    insitu = stars.in_situ[idx]
    merged = ~insitu & ~stars.wind[idx] & ~stars.formed_outside[idx]
    gal = stars.gal[idx]
    for snap in np.unique(snap_form[insitu]):
        sel = insitu & (snap_form == snap)
        out[sel] = subfind_ids(sub_gal_by_snap, n_gal, int(snap))[gal[sel]]
    out[merged] = n_gal + stars.prog[idx][merged]
    return out.astype(np.int32)
