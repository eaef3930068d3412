"""The dataset layer: HDF5 PDE trajectories in The Well's layout, read lazily, channels first.

Public API::

    from pdeforge.datasets import TrajectoryDataset, TrajectoryWriter, DatasetMetadata, FormatError, validate, to_xarray

A dataset is a folder ``ROOT/data/{train,valid,test}/*.hdf5`` plus ``ROOT/stats.yaml`` (fitted on train only).
"""

from ._allpairs import PAIRINGS, AllPairsDataset, AllPairsMixture, channel_union
from ._dataset import TrajectoryDataset
from ._format import FormatError, check_disjoint_splits, validate
from ._metadata import DatasetMetadata
from ._observations import ObservationConfig, ObservationView, draw_observations
from ._pdebench import convert_pdebench
from ._stats import Normalizer, compute_stats, load_stats, write_stats
from ._writer import FieldSpec, Schema, TrajectoryWriter
from ._xarray import to_xarray

__all__ = [
    "TrajectoryDataset",
    "TrajectoryWriter",
    "DatasetMetadata",
    "FormatError",
    "validate",
    "check_disjoint_splits",
    "to_xarray",
    "convert_pdebench",
    "FieldSpec",
    "Schema",
    "Normalizer",
    "compute_stats",
    "load_stats",
    "write_stats",
    "AllPairsDataset",
    "AllPairsMixture",
    "channel_union",
    "PAIRINGS",
    "ObservationView",
    "ObservationConfig",
    "draw_observations",
]
