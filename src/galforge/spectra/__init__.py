"""galforge.spectra: VAE / CVAE on SDSS rest-frame spectra x GSWLC (Iwasaki, Cooray, Takeuchi).

Modules: :mod:`~galforge.spectra.readers` (DR7 spSpec and DR8+ spec files),
:mod:`~galforge.spectra.selection` (GSWLC cross-match and cuts),
:mod:`~galforge.spectra.resample` (flux-conserving resampling),
:mod:`~galforge.spectra.preprocess` and :mod:`~galforge.spectra.infill` (rest frame,
4000 log-lambda pixels, masks, iterative-PCA infill), :mod:`~galforge.spectra.store`
(the preprocessed HDF5 files), :mod:`~galforge.spectra.model`
(the VAE / CVAE), :mod:`~galforge.spectra.training`, :mod:`~galforge.spectra.bic`,
:mod:`~galforge.spectra.analysis` (PCA of the latents, MI, SHAP),
:mod:`~galforge.spectra.steps` (the workflow steps) and the figures.
"""
