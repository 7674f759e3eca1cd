"""workbench.data (see DESIGN.md)."""
