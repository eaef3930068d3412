"""pdeforge: reference PDE solvers, one HDF5 dataset layer (The Well's layout), neural operators and PINNs.

The top-level package imports nothing heavy so that ``pdeforge --help`` answers at once; import the
subpackages (``pdeforge.datasets``, ``pdeforge.solvers``, ...) for the work itself.
"""

__version__ = "0.1.0"
