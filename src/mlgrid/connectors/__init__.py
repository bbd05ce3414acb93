"""Sources outside mlgrid whose state becomes workspace events (the MLflow connector)."""
