"""Writing an evaluation's report: paired comparisons, the why from the numbers, tables, plots."""
