"""Offline stand-ins of the archives: mock universes with planted truth.

``mock/`` mirrors ``archives/``: one module (or package) per archive it
imitates, writing files in that archive's own layout, so that a study reads
mock and real data through one path, and shared by every study that reads
that archive.

* :mod:`galforge.mock.environment` imitates the SDSS DR7 galaxy catalogue with
  MPA-JHU properties (:mod:`galforge.archives.sdss`), with planted environment
  trends; :mod:`galforge.mock.lognormal` is its density field.
* :mod:`galforge.mock.spectra` imitates the SDSS spectra
  (:mod:`galforge.archives.sdss_spectra`) with their GSWLC
  (:mod:`galforge.archives.gswlc`) and MPA-JHU metallicity catalogues, with
  planted physical parameters.
* :mod:`galforge.mock.settings` holds the settings of both (light: the
  configuration checker imports it without numpy).

Why per archive and not per study: a mock stands in for an archive, so it
belongs next to what it imitates; it may import ``archives/`` (layouts,
writers, the spectrum key, the pixel-mask bits) and nothing of the studies, and
a second study reading the same archive reuses the same mock. The scale
presets of a mock (``tiny``/``demo``/``paper``) belong to the study that runs
it, in that study's ``presets`` module.
"""
