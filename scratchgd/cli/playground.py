"""``scratchgd playground``: serve the local page where runs are changed and watched live."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import threading
import webbrowser

from ._data import add_data_arguments

LOCAL = ("127.0.0.1", "localhost", "::1")
"""Hosts that serve this machine alone."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``playground`` to the sub-parsers ``commands``."""
    playground = commands.add_parser(
        "playground", help="a local web page: change the batch size, watch the run "
        "(needs the playground extra)")
    playground.set_defaults(run=run)
    playground.add_argument("--host", default="127.0.0.1",
                            help="address to serve on (default: 127.0.0.1, this machine only)")
    playground.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any "
                            "free one)")
    playground.add_argument("--no-browser", action="store_true",
                            help="do not open the page in the default browser")
    add_data_arguments(playground)


def hosts_of(host: str, port: int) -> set[str]:
    """The ``host:port`` names a request to this server may carry in its ``Host`` header."""
    names = {host}
    if host in LOCAL:
        names |= {"127.0.0.1", "localhost", "[::1]"}
    elif host in ("0.0.0.0", "::", ""):
        names |= {"127.0.0.1", "localhost", socket.gethostname(), socket.getfqdn()}
        try:
            names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
        except OSError:
            pass
    return {f"{name}:{port}" for name in names}


def run(args: argparse.Namespace) -> int:
    """Run ``scratchgd playground`` until Ctrl-C; return the exit status."""
    try:
        import uvicorn

        from ..playground.app import create_app
    except ImportError as exc:
        print(f"scratchgd: error: the playground needs the playground extra ({exc.name} is "
              f"missing): pip install -e \".[playground]\"", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        print(f"scratchgd: error: port {args.port} on {args.host} {why}; pass --port N "
              f"(or --port 0 for any free one)", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    try:
        app = create_app(args, hosts_of(args.host, port))  # reads --data before serving
    except BaseException:
        sock.close()
        raise
    if args.host not in LOCAL:
        print(f"scratchgd: warning: serving on {args.host}, not this machine alone: anyone who "
              f"can reach port {port} can train here", file=sys.stderr)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::', '') else shown}:{port}/"
    print(f"scratchgd playground: {url}  (Ctrl-C to stop)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1,
                                           lifespan="off"))
    if not args.no_browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it has handled
        pass
    finally:
        app.state.runner.close()
    print("scratchgd playground: stopped", flush=True)
    return 0
