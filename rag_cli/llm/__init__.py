"""LLM backends: one async token-stream protocol; local llama.cpp, OpenAI-compatible HTTP, and none (extractive)."""

from .base import Backend, BackendFailed, Prompt, create, names, register

__all__ = ["Backend", "BackendFailed", "Prompt", "create", "names", "register"]
