"""Tables (terminal) and reports (markdown/HTML)."""
