"""pdeforge.solvers."""
