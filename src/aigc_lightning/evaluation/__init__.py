"""Evaluation a paper can cite: metric functions of features (``metrics``), images → features with a stated
resize (``extract``), reference statistics files and the metric card (``card``), perceptual path length
(``ppl``). The command line is ``python -m aigc_lightning.evaluate``; ``GenerativeMetrics`` writes the same card
in ``test`` runs."""

from aigc_lightning.evaluation.card import Reference, Settings, load_reference, save_reference, score
from aigc_lightning.evaluation.extract import Extractor, load_extractor
from aigc_lightning.evaluation.metrics import fid, frechet_distance, kid_subsets, manifold_metrics

__all__ = [
    "Extractor",
    "Reference",
    "Settings",
    "fid",
    "frechet_distance",
    "kid_subsets",
    "load_extractor",
    "load_reference",
    "manifold_metrics",
    "save_reference",
    "score",
]
