"""Evaluation: full-ranking Recall/NDCG@K under the HLLM leave-one-out protocol."""

from hllm.evaluation.ranking import (
    DEFAULT_KS,
    evaluate_ranking,
    metrics_from_ranks,
    target_ranks,
    topk_scores,
)

__all__ = ["DEFAULT_KS", "evaluate_ranking", "metrics_from_ranks", "target_ranks", "topk_scores"]
