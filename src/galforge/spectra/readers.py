"""Read SDSS optical spectra in both archive formats into one :class:`SpectrumData`.

Formats
-------
``spSpec`` (SDSS DR7, ``spSpec-MJD-PLATE-FIBER.fit``, the DR7 Data Archive Server)
    One image in the primary HDU with one row per array, named by the header
    keywords ``ARRAY1`` .. ``ARRAY4``: ``SPECTRUM``, ``CONTINUUM-SUBTRACTED
    SPECTRUM``, ``ERROR`` (1 sigma, same units) and ``MASK`` (pixel mask bits,
    stored as float32); the real files carry a fifth, unlabelled row, which is
    not read. Units ``BUNIT = 1.0E-17 erg/cm/s/Ang``. Wavelengths are
    log-linear: pixel ``i`` has ``log10(lambda) = COEFF0 + COEFF1 * i`` at its
    centre (``COEFF0``: "Center wavelength (log10) of first pi[xel]"), vacuum
    (``VACUUM = T``). Redshift and class come from the header: ``Z``,
    ``Z_ERR``, ``Z_CONF``, ``Z_WARNIN`` (the DR7 ``zWarning`` flags) and
    ``SPEC_CLN`` (DR7 ``specClass``); identity from ``PLATEID``, ``MJD``,
    ``FIBERID``. HDU 6 holds the spectro2d ``andMask``/``orMask`` per pixel
    (int32).
``spec`` (SDSS DR8 and later, ``spec-PLATE-MJD-FIBER.fits``, the Science Archive Server)
    HDU 1 ``COADD``: columns ``flux``, ``loglam`` (log10 vacuum wavelength of
    the pixel centre), ``ivar``, ``and_mask``, ``or_mask``, ``wdisp``,
    ``sky``, ``model`` (float32 ``loglam``, snapped back to the exact
    ``c0 + 1e-4 i`` grid when it is that grid rounded); HDU 2 ``SPECOBJ``: one row with ``PLATE``, ``MJD``,
    ``FIBERID``, ``Z``, ``Z_ERR``, ``ZWARNING``, ``CLASS``, ``SUBCLASS``, ...;
    HDU 3 ``SPZLINE``. The *full* files add one HDU per exposure and camera
    (``B1-...``, ``R1-...``) after HDU 3; the *lite* files stop at HDU 3.

Binary tables (COADD, SPECOBJ, the DR7 mask table) are read directly from the file's
bytes when their columns are simple (:mod:`galforge.spectra.bintable`, 4-10x faster per
file than astropy's table interface, identical values); other tables go through astropy.

Checked against the real files in ``shared/data/spectra`` (three DR7 spSpec,
two DR8+ lite, two full, one lite QSO): every header/SPECOBJ identity and
redshift agrees with the table of that folder's README.

What the real DR7 files showed
------------------------------
* The image ``MASK`` row equals the HDU 6 ``andMask`` except for bit 30
  (``EMLINE``, "emission line detected here", set by spectro1d) and a few
  extra ``BRIGHTSKY`` (bit 23) pixels. ``EMLINE`` is not a bad-pixel flag:
  downstream masking must not treat it as one (see :data:`galforge.archives.sdss_pixmask.PIXMASK_BITS`).
  The reader returns the image row as integers OR-ed with HDU 6 ``andMask``
  (exact int32; restores low bits that float32 could lose next to bit 30).
* Pixels with ``ERROR = 0`` (the first ~30 and last ~9 pixels, which also
  carry ``NODATA``) get ``ivar = 0``.
* ``Z_WARNIN`` is non-zero on two of the three z < 0.1 DR7 galaxies (4608 =
  ``AB_INC | LOC``, zConf 0.53; 66048 = ``AB_INC | 4000BREAK``, zConf 0.99).
  DR7 ``zWarning`` bits are not the DR8 ``ZWARNING`` bits, so
  :attr:`SpectrumData.redshift_reliable` judges each format by its own flags.

References
----------
DR7 spSpec and ``specClass``/``zWarning`` values: the DR7-era SpecObj schema
(http://www.sdss.jhu.edu/ScienceArchive/sdssQT/sxSpecObj.html) and
http://www.sdss.org/dr7/products/spectra/. DR8+ ``spec`` files, ``ZWARNING``:
the SDSS data model (https://data.sdss.org/datamodel/files/BOSS_SPECTRO_REDUX/
RUN2D/spectra/PLATE4/spec.html) and Bolton et al. (2012, AJ 144, 144);
``spPixMask`` bits: https://www.sdss.org/dr17/algorithms/bitmasks/#SPPIXMASK.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from galforge.archives.sdss import ZCONF_MIN
from galforge.archives.sdss_spectra import spectrum_key
from galforge.io import InputError
from galforge.spectra.bintable import read_simple_table

__all__ = [
    "DR7_SPEC_CLASSES",
    "DR7_ZWARNING_BITS",
    "DR7_ZWARNING_FATAL",
    "GALAXY_CLASSES",
    "SOURCE_FORMATS",
    "SpectrumData",
    "parse_spectrum_filename",
    "read_spectrum",
    "spectrum_filename",
]

log = logging.getLogger("galforge.spectra")

#: The formats :func:`read_spectrum` recognises (``SpectrumData.source_format``).
SOURCE_FORMATS: tuple[str, ...] = ("spSpec", "spec-lite", "spec-full")

#: DR7 ``specClass`` (header ``SPEC_CLN``) -> class name.
DR7_SPEC_CLASSES: dict[int, str] = {
    0: "UNKNOWN",
    1: "STAR",
    2: "GALAXY",
    3: "QSO",
    4: "HIZ_QSO",
    5: "SKY",
    6: "STAR_LATE",
    7: "GAL_EM",
}

#: Classes that count as galaxies (DR7 ``GAL_EM``: emission-line galaxy).
GALAXY_CLASSES: frozenset[str] = frozenset({"GALAXY", "GAL_EM"})

#: DR7 ``zWarning`` bits (DR7 SpecObj schema).
DR7_ZWARNING_BITS: dict[str, int] = {
    "NO_SPEC": 0x1,
    "NO_BLUE": 0x2,
    "NO_RED": 0x4,
    "NOT_GAL": 0x10,
    "NOT_QSO": 0x20,
    "NOT_STAR": 0x40,
    "GAL_COEF": 0x80,
    "EMAB_INC": 0x100,
    "AB_INC": 0x200,
    "EM_INC": 0x400,
    "HIZ": 0x800,
    "LOC": 0x1000,
    "LOW_SNG": 0x2000,
    "LOW_SNR": 0x4000,
    "LOW_SNI": 0x8000,
    "4000BREAK": 0x10000,
}

#: DR7 ``zWarning`` bits that make a redshift unusable here: no spectrum, a
#: missing spectrograph half, or emission- and absorption-line redshifts that
#: disagree. The other DR7 bits are soft warnings (low S/N in a band, several
#: cross-correlation peaks, low confidence -- which ``Z_CONF`` > 0.35 covers).
DR7_ZWARNING_FATAL: int = (
    DR7_ZWARNING_BITS["NO_SPEC"]
    | DR7_ZWARNING_BITS["NO_BLUE"]
    | DR7_ZWARNING_BITS["NO_RED"]
    | DR7_ZWARNING_BITS["EMAB_INC"]
)


#: Pixel width of the SDSS/BOSS log-linear wavelength grid [dex].
SDSS_DLOGLAM = 1e-4

_DAMAGED = re.compile(r"truncated|corrupt", re.IGNORECASE)
_SPSPEC_RE = re.compile(r"^spSpec-(\d{5})-(\d{4,})-(\d{3,})\.fit(?:s)?(?:\.gz)?$")
_SPEC_RE = re.compile(r"^spec-(\d{4,})-(\d{5})-(\d{4,})\.fits(?:\.gz)?$")


@dataclass(frozen=True)
class SpectrumData:
    """One spectrum as read from disk, whatever its archive format.

    Attributes
    ----------
    path : pathlib.Path
        The file read.
    source_format : str
        ``"spSpec"`` (DR7), ``"spec-lite"`` or ``"spec-full"`` (DR8+).
    plate, mjd, fiber : int
        Spectrum identity (from the file's header / SPECOBJ row).
    z, z_err : float
        Redshift and its error.
    z_warning : int
        Redshift warning flags as the file stores them: DR7 ``zWarning``
        (:data:`DR7_ZWARNING_BITS`) for spSpec, DR8+ ``ZWARNING`` otherwise.
    spec_class : str
        Upper-case class: ``"GALAXY"``, ``"STAR"``, ``"QSO"``, ``"UNKNOWN"``,
        ... (DR7 integers mapped by :data:`DR7_SPEC_CLASSES`).
    loglam : numpy.ndarray
        float64 (npix,), observed-frame log10 vacuum wavelength [Angstrom] of
        the pixel centres, strictly increasing.
    flux : numpy.ndarray
        float64, 1e-17 erg/s/cm^2/Angstrom; 0 where the file has a non-finite value.
    ivar : numpy.ndarray
        float64 inverse variance; 0 = no information (negative or non-finite
        values in the file, zero errors, non-finite flux).
    and_mask : numpy.ndarray
        int64 ``spPixMask`` bits (:data:`galforge.archives.sdss_pixmask.PIXMASK_BITS`).
    z_conf : float
        DR7 redshift confidence ``Z_CONF``; NaN for DR8+ files (which have none).
    """

    path: Path
    source_format: str
    plate: int
    mjd: int
    fiber: int
    z: float
    z_err: float
    z_warning: int
    spec_class: str
    loglam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    and_mask: np.ndarray
    z_conf: float = math.nan

    @property
    def key(self) -> int:
        """The spectrum key of :func:`galforge.archives.sdss_spectra.spectrum_key`."""
        return int(spectrum_key(self.plate, self.mjd, self.fiber))

    @property
    def is_galaxy(self) -> bool:
        """Whether the class is one of :data:`GALAXY_CLASSES`."""
        return self.spec_class in GALAXY_CLASSES

    @property
    def redshift_reliable(self) -> bool:
        """Whether the redshift has no disqualifying warning, judged per format.

        DR8+ (``spec``): ``ZWARNING == 0`` ("no known problems", Bolton et al.
        2012). DR7 (``spSpec``): no bit of :data:`DR7_ZWARNING_FATAL` set and
        ``Z_CONF`` > 0.35 (the DR7 main-sample confidence cut, as in
        :mod:`galforge.archives.sdss`).
        """
        if self.source_format == "spSpec":
            conf_ok = not math.isfinite(self.z_conf) or self.z_conf > ZCONF_MIN
            return (self.z_warning & DR7_ZWARNING_FATAL) == 0 and conf_ok
        return self.z_warning == 0

    @property
    def wavelength(self) -> np.ndarray:
        """Observed-frame vacuum wavelength of the pixel centres [Angstrom]."""
        return np.power(10.0, self.loglam)


def spectrum_filename(fmt: str, plate: int, mjd: int, fiber: int) -> str:
    """The archive's file name of one spectrum.

    Parameters
    ----------
    fmt : str
        ``"spSpec"`` (DR7: ``spSpec-MJD5-PLATE4-FIBER3.fit``) or ``"spec"``,
        ``"spec-lite"``, ``"spec-full"`` (DR8+: ``spec-PLATE4-MJD5-FIBER4.fits``;
        lite and full files share the name and differ by folder).
    plate, mjd, fiber : int
        Spectrum identity.

    Returns
    -------
    str
        For example ``spSpec-51630-0266-637.fit`` or ``spec-0266-51602-0001.fits``.
    """
    p, m, f = _as_ids(plate, mjd, fiber)
    if fmt == "spSpec":
        return f"spSpec-{m:05d}-{p:04d}-{f:03d}.fit"
    if fmt in ("spec", "spec-lite", "spec-full"):
        return f"spec-{p:04d}-{m:05d}-{f:04d}.fits"
    raise ValueError(f"unknown spectrum format {fmt!r}; use 'spSpec', 'spec-lite' or 'spec-full'")


def parse_spectrum_filename(name: str | os.PathLike) -> tuple[str, int, int, int] | None:
    """Identity encoded in an archive file name, or None when the name is not one.

    Returns
    -------
    tuple or None
        ``(family, plate, mjd, fiber)`` with family ``"spSpec"`` or ``"spec"``.
    """
    base = Path(name).name
    m = _SPSPEC_RE.match(base)
    if m:
        return "spSpec", int(m.group(2)), int(m.group(1)), int(m.group(3))
    m = _SPEC_RE.match(base)
    if m:
        return "spec", int(m.group(1)), int(m.group(2)), int(m.group(3))
    return None


def _as_ids(plate: Any, mjd: Any, fiber: Any) -> tuple[int, int, int]:
    out = []
    for name, value in (("plate", plate), ("mjd", mjd), ("fiber", fiber)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        out.append(int(value))
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------- reading


def read_spectrum(path: str | os.PathLike) -> SpectrumData:
    """Read one SDSS spectrum, DR7 ``spSpec`` or DR8+ ``spec`` (lite or full).

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file (optionally gzip-compressed).

    Returns
    -------
    SpectrumData
        The spectrum, with the identity and redshift of the file.

    Raises
    ------
    InputError
        The file is missing or not FITS; it has neither layout; an HDU, column
        or header keyword is missing; the arrays disagree in length or the
        wavelengths do not increase; the identity in the file name disagrees
        with the file's header. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"spectrum file not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                spec = _read_open(path, hdul)
                error: Exception | None = None
        except InputError as exc:
            error = exc
        except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError) as exc:
            error = InputError(f"{path}: not a readable SDSS spectrum FITS file ({exc})")
            error.__cause__ = exc
    damaged = [str(w.message) for w in caught if _DAMAGED.search(str(w.message))]
    if damaged:
        raise InputError(f"{path}: damaged FITS file ({' '.join(damaged[0].split())})")
    if error is not None:
        raise error
    for w in caught:
        log.debug("%s: %s", path, w.message)
    _check_name(path, spec)
    return spec


def _read_open(path: Path, hdul: fits.HDUList) -> SpectrumData:
    primary = hdul[0]
    if primary.header.get("COEFF0") is not None and primary.header.get("NAXIS", 0) == 2:
        return _read_spspec(path, hdul)
    names = {(h.name or "").upper() for h in hdul}
    if "COADD" in names or "SPECOBJ" in names or (
        len(hdul) > 2 and isinstance(hdul[1], fits.BinTableHDU)
    ):
        return _read_spec(path, hdul)
    raise InputError(
        f"{path}: neither a DR7 spSpec file (image with COEFF0/COEFF1 header) nor a DR8+ "
        f"spec file (HDU 1 COADD, HDU 2 SPECOBJ); HDUs: {[h.name for h in hdul]}"
    )


def _header_value(path: Path, header: fits.Header, key: str, kind: type) -> Any:
    if key not in header:
        raise InputError(f"{path}: header keyword {key!r} missing from the primary HDU")
    value = header[key]
    try:
        return kind(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: header keyword {key!r} = {value!r} is not {kind.__name__}") from exc


def _read_spspec(path: Path, hdul: fits.HDUList) -> SpectrumData:
    hdr = hdul[0].header
    image = hdul[0].data
    if image is None or image.ndim != 2 or image.shape[0] < 4:
        shape = None if image is None else image.shape
        raise InputError(
            f"{path}: DR7 spSpec primary image must have >= 4 rows (spectrum, continuum-"
            f"subtracted, error, mask), got shape {shape}"
        )
    coeff0 = _header_value(path, hdr, "COEFF0", float)
    coeff1 = _header_value(path, hdr, "COEFF1", float)
    if not (math.isfinite(coeff0) and math.isfinite(coeff1) and coeff1 > 0):
        raise InputError(f"{path}: COEFF0={coeff0}, COEFF1={coeff1} do not define a wavelength grid")
    npix = image.shape[1]
    loglam = coeff0 + coeff1 * np.arange(npix, dtype=np.float64)
    flux = np.asarray(image[0], dtype=np.float64)
    err = np.asarray(image[2], dtype=np.float64)
    mask_row = np.asarray(image[3], dtype=np.float64)
    mask = np.where(np.isfinite(mask_row) & (mask_row >= 0), np.rint(mask_row), 0).astype(np.int64)
    if len(hdul) > 6 and isinstance(hdul[6], fits.BinTableHDU):
        masks = _Table(path, hdul, 6)
        if masks.has("andMask") and masks.n_rows == npix:
            mask |= masks.column("andMask").astype(np.int64)
    good_err = np.isfinite(err) & (err > 0)
    ivar = np.zeros(npix, dtype=np.float64)
    ivar[good_err] = 1.0 / err[good_err] ** 2
    flux, ivar = _clean(flux, ivar)
    spec_cln = _header_value(path, hdr, "SPEC_CLN", int)
    z_conf = float(hdr["Z_CONF"]) if "Z_CONF" in hdr else math.nan
    return SpectrumData(
        path=path,
        source_format="spSpec",
        plate=_header_value(path, hdr, "PLATEID", int),
        mjd=_header_value(path, hdr, "MJD", int),
        fiber=_header_value(path, hdr, "FIBERID", int),
        z=_header_value(path, hdr, "Z", float),
        z_err=_header_value(path, hdr, "Z_ERR", float),
        z_warning=_header_value(path, hdr, "Z_WARNIN", int),
        spec_class=DR7_SPEC_CLASSES.get(spec_cln, f"SPEC_CLN_{spec_cln}"),
        loglam=loglam,
        flux=flux,
        ivar=ivar,
        and_mask=mask,
        z_conf=z_conf,
    )


class _Table:
    """The columns of one binary-table HDU, read directly when the table is simple
    (:mod:`galforge.spectra.bintable`, ~10x faster) and through astropy otherwise."""

    def __init__(self, path: Path, hdul: fits.HDUList, index: int) -> None:
        self.path = path
        self.hdu = hdul[index]
        try:
            raw = read_simple_table(hdul, index)
        except OSError as exc:
            raise InputError(f"{path}: damaged FITS file ({exc})") from exc
        if raw is not None:
            self.names = list(raw.dtype.names or ())
            self.n_rows = len(raw)
            self._get = raw.__getitem__
        else:
            self.names = list(self.hdu.columns.names)
            data = self.hdu.data
            self.n_rows = 0 if data is None else len(data)
            self._get = (lambda name: data[name]) if data is not None else None
        self._upper = {c.upper(): c for c in self.names}

    def has(self, name: str) -> bool:
        return name.upper() in self._upper

    def column(self, name: str) -> np.ndarray:
        if name.upper() not in self._upper or self._get is None:
            raise InputError(
                f"{self.path}: HDU {self.hdu.name or '?'} has no column {name!r}; it has "
                f"{self.names}"
            )
        return np.asarray(self._get(self._upper[name.upper()]))


def _table_hdu(path: Path, hdul: fits.HDUList, name: str, index: int) -> _Table:
    for i, hdu in enumerate(hdul):
        if (hdu.name or "").upper() == name and isinstance(hdu, fits.BinTableHDU):
            return _Table(path, hdul, i)
    if len(hdul) > index and isinstance(hdul[index], fits.BinTableHDU):
        return _Table(path, hdul, index)
    raise InputError(f"{path}: no {name} binary table (expected in HDU {index})")


def _read_spec(path: Path, hdul: fits.HDUList) -> SpectrumData:
    coadd = _table_hdu(path, hdul, "COADD", 1)
    specobj = _table_hdu(path, hdul, "SPECOBJ", 2)
    loglam = coadd.column("loglam").astype(np.float64)
    flux = coadd.column("flux").astype(np.float64)
    ivar = coadd.column("ivar").astype(np.float64)
    mask = coadd.column("and_mask").astype(np.int64)
    if specobj.n_rows < 1:
        raise InputError(f"{path}: the SPECOBJ table is empty")
    row = {k: specobj.column(k)[0] for k in ("PLATE", "MJD", "FIBERID", "Z", "Z_ERR")}
    zwarning = specobj.column("ZWARNING")[0]
    spec_class = specobj.column("CLASS")[0]
    if isinstance(spec_class, bytes):
        spec_class = spec_class.decode("ascii", "replace")
    if not (len(flux) == len(ivar) == len(mask) == len(loglam)):
        raise InputError(f"{path}: COADD columns flux, loglam, ivar, and_mask differ in length")
    ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
    flux, ivar = _clean(flux, ivar)
    loglam = _snap_sdss_grid(loglam)
    source_format = "spec-full" if len(hdul) > 4 else "spec-lite"
    return SpectrumData(
        path=path,
        source_format=source_format,
        plate=int(row["PLATE"]),
        mjd=int(row["MJD"]),
        fiber=int(row["FIBERID"]),
        z=float(row["Z"]),
        z_err=float(row["Z_ERR"]),
        z_warning=int(zwarning),
        spec_class=str(spec_class).strip().upper() or "UNKNOWN",
        loglam=loglam,
        flux=flux,
        ivar=ivar,
        and_mask=mask,
    )


def _snap_sdss_grid(loglam: np.ndarray) -> np.ndarray:
    """The exact SDSS grid ``c0 + 1e-4 i`` when float32 ``loglam`` is that grid rounded.

    DR8+ files store ``loglam`` as float32 (one ulp is 2.4e-7 dex at log10 of
    4000-9000 A), so the steps jitter by ~0.1 %. When every value lies within
    5e-7 dex of ``c0 + 1e-4 i`` with ``c0`` on the 1e-4 dex grid, that exact
    float64 grid is returned; otherwise the stored values.
    """
    if loglam.size < 2 or not np.all(np.isfinite(loglam)):
        return loglam
    c0 = round(float(loglam[0]) * 1e4) / 1e4
    grid = c0 + SDSS_DLOGLAM * np.arange(loglam.size, dtype=np.float64)
    if np.max(np.abs(grid - loglam)) <= 5e-7:
        return grid
    return loglam


def _clean(flux: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero the weight (and the value) of non-finite flux pixels."""
    bad = ~np.isfinite(flux)
    if bad.any():
        flux = np.where(bad, 0.0, flux)
        ivar = np.where(bad, 0.0, ivar)
    return flux, ivar


def _check_name(path: Path, spec: SpectrumData) -> None:
    if spec.loglam.size < 2 or not np.all(np.diff(spec.loglam) > 0):
        raise InputError(f"{path}: wavelengths (loglam) are not strictly increasing")
    if not np.all(np.isfinite(spec.loglam)):
        raise InputError(f"{path}: non-finite wavelengths (loglam)")
    parsed = parse_spectrum_filename(path)
    if parsed is None:
        return
    family, plate, mjd, fiber = parsed
    expect = "spSpec" if spec.source_format == "spSpec" else "spec"
    if family != expect:
        raise InputError(f"{path}: the name says {family} but the file has the {expect} layout")
    if (plate, mjd, fiber) != (spec.plate, spec.mjd, spec.fiber):
        raise InputError(
            f"{path}: the name says plate/mjd/fiber {plate}/{mjd}/{fiber} but the file holds "
            f"{spec.plate}/{spec.mjd}/{spec.fiber}"
        )
