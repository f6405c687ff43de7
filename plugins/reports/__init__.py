"""Battery reports an engineer signs: a discharge and a string's resistance
health, as a self-contained HTML page and a PDF (docs/analytics.md, "Reports")."""
