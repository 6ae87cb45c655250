"""galforge.figures: shared figure helpers (house style, provenance-stamped atomic output).

Study-specific figure modules live in the study packages and save through
:func:`save_figure`; :mod:`galforge.figures.helpers` holds the small plotting helpers they
share (number formats, log-axis tick labels, boxed notes, annotated heat maps) and
:mod:`galforge.figures.training` the training-loss figure.
"""

from galforge.figures.common import (
    PALETTE,
    STAMP_GID,
    STYLE,
    new_figure,
    save_figure,
    style,
)

__all__ = ["PALETTE", "STAMP_GID", "STYLE", "new_figure", "save_figure", "style"]
