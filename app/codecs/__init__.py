"""Wire formats in and out: JSON, CSV/TSV, Arrow/Parquet, npy/npz, KServe v2, dataset uploads."""
