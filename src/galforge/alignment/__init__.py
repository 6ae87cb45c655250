"""The alignment study (Jagvaral, Lanusse, Mandelbaum et al.): intrinsic shapes and
orientations of TNG100 galaxies from their place in the cosmic web.

The catalog (:mod:`~galforge.alignment.catalog`) of galaxies, their FoF groups,
their stellar and DM shapes (:mod:`~galforge.alignment.shapes`), the tidal field at each
galaxy (:mod:`~galforge.alignment.tidal`) and the projected ellipticities; the
statistics (:mod:`~galforge.alignment.correlations`); the FoF-group graphs
(:mod:`~galforge.alignment.graphs`) and the rotation-equivariant graph WGAN-GP
(:mod:`~galforge.alignment.gan`), the GNN-conditioned SO(3) score model
(:mod:`~galforge.alignment.galaxy_diffusion`), their generated-catalog checks
(:mod:`~galforge.alignment.evaluate`), the figures (:mod:`~galforge.alignment.figures`)
and the papers-vs-ours table (:mod:`~galforge.alignment.parity`, with the Samuroff et al.
2021 TNG300-1 w_g+ beside ours);
IGSO(3) (:mod:`~galforge.alignment.igso3`) and the
SO(3) diffusion model's synthetic benchmark (:mod:`~galforge.alignment.diffusion`).
"""
