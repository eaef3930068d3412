"""pdeforge.pinns."""
