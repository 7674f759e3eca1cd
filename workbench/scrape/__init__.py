"""workbench.scrape (see DESIGN.md)."""
