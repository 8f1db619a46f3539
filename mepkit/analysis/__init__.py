"""Analysis of trial tables: thresholds, recruitment curves, hemispheric excitability, maps."""
