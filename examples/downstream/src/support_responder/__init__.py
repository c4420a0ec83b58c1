"""A support responder built on pinned promptlib prompts."""

from .responder import Reply, Responder

__all__ = ["Reply", "Responder"]
