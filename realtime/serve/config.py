"""What ``emocam serve`` runs with: where it listens, who may ask, its limits, and the recognizer's own options (the
defaults here are the only ones; the command takes its own from them); and ``Refused``, how a request is turned
down."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..recognizer import Options, UsageProblem

# How the options reach uvicorn's worker processes, which import the app afresh.
ENVIRONMENT_KEY = "EMOCAM_SERVE_OPTIONS"
# A token shorter than this is too easy to guess for a port that other machines reach.
MIN_TOKEN_LENGTH = 16


class Refused(Exception):
    """A request the server will not carry out: its HTTP status, a one-line reason for the client, response headers,
    and anything else the JSON answer carries (the records read before a video broke off)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``emocam serve`` runs with. ``recognizer`` holds the same options as ``emocam --source``."""

    recognizer: Options = field(default_factory=Options)
    source: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    # Processes that share the port (uvicorn's workers); each loads its own model.
    workers: int = 1
    # Analysis threads in each process, each with its own face detector; their faces share the model's calls.
    threads: int = 2
    # Requests that may wait for a thread; one more gets 503 with Retry-After.
    queue: int = 16
    # Seconds a request may take, reading its upload included; past that it gets 408 (upload) or 504 (analysis).
    request_timeout_s: float = 60.0
    max_upload_mb: float = 25.0
    # Largest image (or video frame) in megapixels, checked from the file's header before anything is decoded.
    max_megapixels: float = 50.0
    max_video_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("workers", "threads"):
            if getattr(self, name) < 1:
                raise UsageProblem(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.queue < 0 or min(self.request_timeout_s, self.max_upload_mb, self.max_megapixels,
                                 self.max_video_s) <= 0:
            raise UsageProblem("--queue must be >= 0 and the timeout and limits above 0")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    def check(self) -> None:
        """UsageProblem for a combination that must not start: a port other machines reach without a token, a token
        too short, or several worker processes with a live source (one process per source)."""
        if self.token is not None and len(self.token) < MIN_TOKEN_LENGTH:
            raise UsageProblem(f"--token must have at least {MIN_TOKEN_LENGTH} characters (make one with: python -c "
                               f"'import secrets; print(secrets.token_urlsafe())')")
        if self.token is None and not loopback(self.host):
            raise UsageProblem(f"--host {self.host} is reachable from other machines: give --token SECRET (or set "
                               f"EMOCAM_TOKEN), which clients send as 'Authorization: Bearer SECRET'")
        if self.source is not None and self.workers > 1:
            raise UsageProblem("a live --source runs in one process: use --workers 1 with --source, and a second "
                               "emocam serve without --source for more API workers")

    def to_json(self) -> str:
        values = asdict(self)
        values["recognizer"] = {k: None if v is None else str(v) if isinstance(v, Path) else v
                                for k, v in values["recognizer"].items()}
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> "ServeOptions":
        values = json.loads(text)
        recognizer = values.pop("recognizer")
        model = recognizer.pop("model")
        return cls(recognizer=Options(model=None if model is None else Path(model), **recognizer), **values)

    @classmethod
    def from_environment(cls) -> "ServeOptions":
        """The options the serving command handed to this (worker) process."""
        return cls.from_json(os.environ[ENVIRONMENT_KEY])

    def bound(self, port: int) -> "ServeOptions":
        """The same options with the port actually bound (``--port 0`` lets the system choose one)."""
        return replace(self, port=port)


SERVE_DEFAULTS = ServeOptions()


def loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only: localhost or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
