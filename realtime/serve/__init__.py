"""``emocam serve``: the HTTP API (/v1) and the live page (/) in one process, behind the ``emocam[serve]`` extra.

config (the options and their defaults), uploads (reading what a client sends, within the limits), analysis (the
threads, the shared model and the bounded queue), live (the one live source), app (the ASGI application), server
(starting uvicorn). Only config is imported here: the rest needs the extra's packages.
"""

from .config import SERVE_DEFAULTS, Refused, ServeOptions

__all__ = ["Refused", "SERVE_DEFAULTS", "ServeOptions"]
