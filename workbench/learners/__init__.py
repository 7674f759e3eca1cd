"""workbench.learners (see DESIGN.md)."""
