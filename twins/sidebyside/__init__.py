"""Side-by-side reading of the twins: step alignment, terminal and HTML rendering."""
