"""HLLM: hierarchical LLM sequential recommender, as a production system."""

__version__ = "0.1.0"
