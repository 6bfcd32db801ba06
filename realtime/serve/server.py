"""Starting ``emocam serve``: the checks that refuse to start, the listening socket, then uvicorn in this process or in
several worker processes that share the socket."""

from __future__ import annotations

import os
import socket
import sys

from .. import UsageProblem, open_source
from ..extras import require
from ..sources import stream_url
from .config import ENVIRONMENT_KEY, ServeOptions


def serve(options: ServeOptions) -> None:
    """Serve the API (and the live source, if any) until SIGTERM or Ctrl-C; what is refused is told in one line
    (UsageProblem, SourceError, ModelError, MissingExtra) before anything listens."""
    options.check()
    uvicorn = require("uvicorn")
    for module in ("fastapi", "python_multipart"):
        require(module)
    check_source(options.source)
    sock = listening_socket(options.host, options.port)
    options = options.bound(sock.getsockname()[1])
    os.environ[ENVIRONMENT_KEY] = options.to_json()
    settings = dict(log_level="warning", access_log=False, server_header=False, timeout_keep_alive=5,
                    # In-flight requests end within their own timeout; past it, whatever still runs is cancelled.
                    timeout_graceful_shutdown=int(options.request_timeout_s) + 5)
    if options.workers == 1:
        from .analysis import Analysts
        from .app import create_app

        # Loaded here, so that a model that cannot load is told in one line rather than by uvicorn's log.
        server = uvicorn.Server(uvicorn.Config(create_app(options, Analysts(options)), **settings))
        server.run(sockets=[sock])
        if not server.started:
            raise UsageProblem("the server did not start (see the lines above)")
        return
    from uvicorn.supervisors import Multiprocess

    from ..backends import open_backend

    # The model and backend a user named are checked once here, where a refusal is one line, not in each worker.
    recognizer = options.recognizer
    open_backend(recognizer.model_path, recognizer.backend, recognizer.device)
    # The workers inherit descriptor 2, which this process pointed away from the terminal (native libraries' chatter).
    os.dup2(sys.stderr.fileno(), 2)
    config = uvicorn.Config("emocam.serve.app:from_environment", factory=True, workers=options.workers, **settings)
    Multiprocess(config, sockets=[sock]).run()


def check_source(spec: str | None) -> None:
    """A --source file that cannot be read is refused now; a camera or stream that is not there yet is retried while
    the server runs."""
    if spec is None or spec.isdigit() or stream_url(spec) or spec.startswith("/dev/"):
        return
    with open_source(spec):
        pass


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port), for uvicorn to listen on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto named: asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP, and without it every response
    # written in two parts waits 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageProblem(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    sock.set_inheritable(True)
    return sock
