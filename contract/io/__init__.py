"""Readers from files into an ExpressionMatrix: CSV/TSV, GCT, Parquet, h5ad, 10x."""
