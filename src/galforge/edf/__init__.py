"""The edf study: GalacticFlow (Wolf & Buck), a conditional normalizing flow that learns the
10-D stellar extended distribution function of NIHAO galaxies given four global parameters.

One room (``docs/adding-a-study.md``): :mod:`~galforge.edf.settings` and
:mod:`~galforge.edf.presets` (configuration), :mod:`~galforge.edf.steps` and
:mod:`~galforge.edf.cli` (one ``galforge edf-*`` subcommand per workflow rule, plus
``edf-sample``), and the science: :mod:`~galforge.edf.readers` (the ``.npy`` folder or one
table), :mod:`~galforge.edf.clean` (cuts, rotation, conditions), :mod:`~galforge.edf.table`
(the HDF5 eDF table), :mod:`~galforge.edf.flow` (the flow), :mod:`~galforge.edf.training`
(cross-validation models through :mod:`galforge.train`), :mod:`~galforge.edf.mmd` and
:mod:`~galforge.edf.evaluate` (MMDs and the checks), :mod:`~galforge.edf.figures` and
:mod:`~galforge.edf.figure_set`. The archive is :mod:`galforge.archives.zenodo`, its mock
:mod:`galforge.mock.edf`.
"""
