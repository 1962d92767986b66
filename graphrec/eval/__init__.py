"""Full-ranking evaluation."""
from graphrec.eval.metrics import METRICS, metrics_from_hits
from graphrec.eval.ranking import RankingEvaluator

__all__ = ["METRICS", "metrics_from_hits", "RankingEvaluator"]
