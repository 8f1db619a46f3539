"""Figures and reports derived from records and analysis results (matplotlib, the
``report`` extra). Modules import matplotlib lazily, with the Agg backend."""
