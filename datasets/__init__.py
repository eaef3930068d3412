"""The dataset layer: HDF5 PDE trajectories in The Well's layout, read lazily, channels first.

A dataset is a folder ``ROOT/data/{train,valid,test}/*.hdf5`` plus ``ROOT/stats.yaml`` (fitted on train only), on the
disk or at an fsspec URL (``https://``, ``hf://``, ``s3://``, ``gs://``; read through a block cache on the disk:
``_remote``); ``_download`` fetches The Well's and PDEBench's published files (``pdeforge download``); the importers
convert PDEBench's, Poseidon's and PDEArena's files (``pdeforge convert``).

Examples:
    Windows of a dataset root (``data/burgers``: ``pdeforge generate burgers_1d --out data/burgers --n-trajectories
    20 --resolution 32``), two frames in and one out, channels first:

    >>> from pdeforge.datasets import TrajectoryDataset, TrajectoryWriter, DatasetMetadata, FormatError, validate
    >>> data = TrajectoryDataset("data/burgers", split="train", n_steps_input=2, n_steps_output=1)
    >>> len(validate("data/burgers")), len(data)  # files checked; 16 trajectories x 39 windows
    (3, 624)
    >>> data[0]["input_fields"].shape, data.metadata.field_names, data.metadata.scalar_names  # (T_in, C, *space)
    (torch.Size([2, 1, 32]), ('u',), ('nu',))
"""

from ._allpairs import PAIRINGS, AllPairsDataset, AllPairsMixture, channel_union
from ._dataset import TrajectoryDataset
from ._format import FormatError, check_disjoint_splits, validate
from ._metadata import DatasetMetadata
from ._observations import ObservationConfig, ObservationView, draw_observations
from ._pdearena import convert_pdearena
from ._pdebench import convert_pdebench
from ._poseidon import convert_poseidon
from ._remote import write_index
from ._stats import Normalizer, compute_stats, load_stats, stats_path, write_stats
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
    "convert_poseidon",
    "convert_pdearena",
    "FieldSpec",
    "Schema",
    "Normalizer",
    "compute_stats",
    "load_stats",
    "stats_path",
    "write_index",
    "write_stats",
    "AllPairsDataset",
    "AllPairsMixture",
    "channel_union",
    "PAIRINGS",
    "ObservationView",
    "ObservationConfig",
    "draw_observations",
]
