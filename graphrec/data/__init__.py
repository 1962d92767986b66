"""The interaction data layer: logs, readers, cleaning, splits, item features, sequences."""
from graphrec.data.features import ItemFeatures, align_rows, load_features, load_npy, load_table
from graphrec.data.filters import dedupe, kcore, to_implicit
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.readers import (from_columns, from_indices, read_interactions, read_mmrec_inter,
                                   read_movielens, read_recbole_inter, read_table)
from graphrec.data.sequences import Sequences
from graphrec.data.split import (DEFAULT_HOLDOUT, Split, dataset_split, loo_labels, make_split, per_user_counts,
                                 random_labels, split_from_labels, split_labels, user_labels)
from graphrec.data.dataset import Dataset
from graphrec.data.export import export_mmrec
from graphrec.data.hetero import from_heterodata
from graphrec.data.card import load_card
from graphrec.data.frames import dataset_from_frames

__all__ = ["DEFAULT_HOLDOUT", "Dataset", "IdMap", "Interactions", "ItemFeatures", "Sequences", "Split", "align_rows", "dataset_split", "dedupe",
           "dataset_from_frames", "export_mmrec", "from_columns", "from_heterodata", "load_card", "from_indices", "kcore", "load_features", "load_npy", "load_table",
           "loo_labels", "make_split", "per_user_counts", "random_labels", "read_interactions", "read_mmrec_inter",
           "read_movielens", "read_recbole_inter", "read_table", "split_from_labels", "split_labels", "to_implicit",
           "user_labels"]
