"""``rag serve`` and ``rag mcp``: routes in app.py, answers in ask.py, OpenAI API, MCP, metrics, the run loop."""

from .app import Hub, create_app
from .run import open_hub, serve, serve_mcp_stdio

__all__ = ["Hub", "create_app", "open_hub", "serve", "serve_mcp_stdio"]
