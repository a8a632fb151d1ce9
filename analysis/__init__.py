"""Statistics, plots and reports over results folders."""
