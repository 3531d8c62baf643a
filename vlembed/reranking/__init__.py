"""Zero-shot reranking with a generative (M)LLM: P("True") for each (query, candidate) pair (MM-Embed §4.2)."""

from .prompts import DEFAULT_PROMPTS, resolve_prompt
from .reranker import MLLMReranker

__all__ = ["MLLMReranker", "DEFAULT_PROMPTS", "resolve_prompt"]
