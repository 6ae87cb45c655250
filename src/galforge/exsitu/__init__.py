"""The exsitu study (Angeloudi et al., ML4PS 2024): ex-situ stellar-mass maps from IFU-like maps."""
