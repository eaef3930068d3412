"""pdeforge: reference PDE solvers, one HDF5 dataset layer (The Well's layout), neural operators and PINNs.

The top-level package imports nothing heavy so that ``pdeforge --help`` answers at once; import the
subpackages (``pdeforge.datasets``, ``pdeforge.solvers``, ...) for the work itself; ``pdeforge.load_run(RUN)``
rebuilds the trained model of any family's run folder.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load_run":  # pdeforge.load_run(RUN): any family's trained model, its config and metadata
        from .families import load_run

        return load_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
