"""Preprocessing in numpy: QC, normalisation, ComBat, gene selection, the fitted pipeline."""
