"""Full-ranking evaluation: per user (pairwise task) and per held-out history (next-item task)."""
from graphrec.eval.metrics import METRICS, metrics_from_hits
from graphrec.eval.ranking import RankingEvaluator
from graphrec.eval.sequential import NextItemEvaluator, next_item_targets

__all__ = ["METRICS", "NextItemEvaluator", "RankingEvaluator", "metrics_from_hits", "next_item_targets"]
