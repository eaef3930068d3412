"""pdeforge.operators."""
