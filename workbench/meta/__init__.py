"""workbench.meta (see DESIGN.md)."""
