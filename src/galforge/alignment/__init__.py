"""The alignment study (Jagvaral, Lanusse, Mandelbaum et al.): intrinsic shapes and
orientations of TNG100 galaxies from their place in the cosmic web.

Phase 1 (this package so far): the catalog (:mod:`~galforge.alignment.catalog`) of
galaxies, their FoF groups, their stellar and DM shapes (:mod:`~galforge.alignment.shapes`),
the tidal field at each galaxy (:mod:`~galforge.alignment.tidal`) and the projected
ellipticities.
"""
