"""workbench.widgets (see DESIGN.md)."""
