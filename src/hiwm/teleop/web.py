"""The browser playground's server: one page and one websocket, in the Hi-WM demo's protocol.

Client -> server (JSON text): ``{"type": "init"}``; ``{"type": "action", "action": {"w": 0|1, ...},
"t_client": ms}`` over the task's jog keys; ``{"type": "command", "name": ..., "args": {...}}`` for
the buttons (pause, take_over, hand_back, rollback, fork, label, reset, tree).
Server -> client: binary frames, a 10-byte big-endian header (float64 echo of the ``t_client`` of
the action that produced the frame, 0 when none did; uint16 camera index) then the PNG; and JSON
text: ``hello`` (the commands and the task: its name, ``action_dim``, cameras and jog keys),
``status``, ``result`` (of a command), ``tree`` and ``error`` messages.

It runs its asyncio loop in a thread of its own; the node calls :meth:`send_frame` and
:meth:`send_json` from its thread. Messages over ``max_message_bytes`` close that connection
(code 1009); every other bad message gets an ``error`` reply; the server keeps running.

Who may connect (any website the operator visits could otherwise drive the robot):
- every request's ``Host`` must name this server: a loopback name or address (``localhost``,
  ``127.0.0.1``, ``[::1]``) with the served port, the bound address, or one of ``allowed_hosts``;
  bound to a wildcard address, also any IP address literal and this machine's host name. This
  stops DNS rebinding: a page at ``http://evil.example`` resolved to 127.0.0.1 sends
  ``Host: evil.example``.
- the websocket's ``Origin`` must be the page's own, ``http(s)://<Host>``; a page of another
  origin (another port, another loopback address, ``null``) is refused. A client without an
  ``Origin`` (not a browser: scripts, benchmarks) is accepted only from a loopback address.
- binds beyond loopback need a token, given by the page as ``?token=...``, on every request.
The page is served with a Content-Security-Policy that runs only its own script.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hiwm.comm.node import ThrottledLog
from hiwm.teleop.keys import parse_keys
from hiwm.teleop.operator import COMMAND_ARGS, check_args

COMMANDS = tuple(COMMAND_ARGS)
TOKEN_ENV = "HIWM_TELEOP_TOKEN"


@dataclass
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port (the chosen one is logged)
    token: str = ""  # required when host is not a loopback address; never a ROS parameter
    max_message_bytes: int = 4096
    allowed_hosts: tuple[str, ...] = ()  # more names the page is served under (a lab machine's DNS name)

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"binding to {self.host!r} exposes the robot: set a token "
                f"(parameter 'token_file' naming a file that holds it, or the environment variable {TOKEN_ENV})"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # a dual-stack socket's IPv4 peer: ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header value (``name``, ``name:port``, ``[v6]:port``), the
    name lower-case; None if it is not one."""
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname or "", parts.port) if parts.hostname and not parts.path else None
    except ValueError:  # a port out of range or not a number
        return None


def inline_script_hashes(page: bytes) -> list[str]:
    """CSP ``'sha256-...'`` sources of a page's inline scripts: the page runs its own code and nothing else."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in re.findall(rb"<script>(.*?)</script>", page, re.S)
    ]


FRAME_HEADER = struct.Struct(">dH")  # t_client echo (ms), camera index


def frame_packet(t_client: float, camera: int, image: bytes) -> bytes:
    """A binary frame: :data:`FRAME_HEADER` (``t_client`` echo, camera index), then the encoded image."""
    return FRAME_HEADER.pack(t_client, camera) + image


class PlaygroundServer:
    """Serves the page and the websocket; ``on_action(keys, t_client)`` and ``await on_command(name,
    args)`` run in the server thread (a command's result dict is sent back); ``greeting()`` lists the
    messages a newly connected page gets (phase, status). ``keys`` are the jog keys an action may
    name; ``task`` (JSON types) goes to the page in its ``hello``."""

    def __init__(
        self,
        cfg: WebConfig,
        on_action: Callable[[dict[str, bool], float], None],
        on_command: Callable[[str, dict], Awaitable[dict]],
        greeting: Callable[[], list[dict]] = list,
        log: logging.Logger | None = None,
        keys: Collection[str] = (),
        task: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.keys, self.task = tuple(keys), task or {}
        self.on_action, self.on_command, self.greeting = on_action, on_command, greeting
        self.log = log or logging.getLogger("hiwm.teleop.web")
        self.page = resources.files("hiwm.teleop").joinpath("static/playground.html").read_bytes()
        self.page_policy = (
            "default-src 'none'; script-src " + " ".join(inline_script_hashes(self.page)) + "; "
            "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' blob: data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        self.refusals = ThrottledLog(self.log)
        # the library logs every connection at INFO: a page retrying in a loop would flood the log
        self._connections_log = logging.getLogger("hiwm.teleop.web.connections")
        self._connections_log.setLevel(logging.WARNING)
        self.clients: set[ServerConnection] = set()
        self.port = cfg.port
        self.refused = 0
        self._sending: set[asyncio.Future] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="playground", daemon=True)

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("playground server did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(5.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported through start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handle,
            self.cfg.host,
            self.cfg.port,
            process_request=self._http,
            max_size=self.cfg.max_message_bytes,
            compression=None,  # frames are PNG already; deflate only adds latency
            logger=self._connections_log,
        ) as server:
            self.port = server.sockets[0].getsockname()[1] if server.sockets else self.cfg.port
            self._ready.set()
            await self._stop.wait()

    # -- HTTP ----------------------------------------------------------------
    def _authorized(self, path: str) -> bool:
        if not self.cfg.token:
            return True
        given = parse_qs(urlsplit(path).query).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.cfg.token.encode())

    def host_allowed(self, name: str, port: int | None) -> bool:
        """Whether a ``Host`` (split by :func:`split_host`) names this server."""
        if port != self.port and not (port is None and self.port == 80):
            return False
        bound = self.cfg.host.lower().strip("[]")
        if is_loopback(name) or name == bound or name in (h.lower() for h in self.cfg.allowed_hosts):
            return True
        if bound in ("0.0.0.0", "::", ""):  # every interface: its addresses and this machine's names
            return is_ip_literal(name) or name in (socket.gethostname().lower(), socket.getfqdn().lower())
        return False

    def refusal(self, request: Request, peer: str | None) -> str | None:
        """Why a request may not be served (None: it may): the Host, the websocket's Origin."""
        host = request.headers.get("Host", "")
        split = split_host(host)
        if split is None or not self.host_allowed(*split):
            return f"Host {host!r} is not this server's"
        if urlsplit(request.path).path != "/ws":
            return None
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: a script on this machine may; one elsewhere must say who it is
            local = peer is not None and is_loopback(peer)
            return None if local else "a websocket from another machine needs an Origin"
        if origin.lower() not in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return f"a page from {origin[:100]!r} may not connect (only http://{host})"
        return None

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        peer = connection.remote_address[0] if connection.remote_address else None
        why = self.refusal(request, peer)
        if why is not None:
            self.refused += 1
            self.refusals.warning("http", f"refused a request for {path[:100]!r} from {peer}: {why}")
            return _response(HTTPStatus.FORBIDDEN, why.encode() + b"\n", "text/plain")
        if not self._authorized(request.path):
            self.refused += 1
            self.refusals.warning("token", f"refused a request for {path[:100]!r} from {peer}: no valid token")
            return _response(HTTPStatus.FORBIDDEN, b"token required\n", "text/plain")
        if path == "/ws":
            return None  # websocket handshake
        if path in ("/", "/index.html"):
            return _response(HTTPStatus.OK, self.page, "text/html; charset=utf-8", self.page_policy)
        return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    # -- websocket -----------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        self.clients.add(ws)
        try:
            async for raw in ws:
                await self._message(ws, raw)
        except ConnectionClosed as exc:
            if exc.rcvd is None and exc.sent is not None and exc.sent.code == 1009:
                self.refused += 1
                self.log.warning(f"closed a client that sent a message over {self.cfg.max_message_bytes} bytes")
        finally:
            self.clients.discard(ws)

    async def _message(self, ws: ServerConnection, raw: str | bytes) -> None:
        try:
            await self._dispatch(ws, raw)
        except ConnectionClosed:
            raise
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # JSONDecodeError is a ValueError
            await self._refuse(ws, str(exc))
        except RecursionError:  # json's decoder on [[[[...]]]]
            await self._refuse(ws, "message too deeply nested")
        except Exception as exc:  # a fault behind a command: answer it, keep the connection and the server
            self.log.exception("a client message failed")
            await self._refuse(ws, f"internal error: {type(exc).__name__}: {exc}")

    async def _refuse(self, ws: ServerConnection, message: str) -> None:
        self.refused += 1
        self.refusals.warning("message", f"refused a client message: {message}")
        await ws.send(json.dumps({"type": "error", "message": message}))

    async def _dispatch(self, ws: ServerConnection, raw: str | bytes) -> None:
        msg = json.loads(raw)
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ValueError("a message is a JSON object with a string 'type'")
        kind = msg["type"]
        if kind == "action":
            self.on_action(parse_keys(msg.get("action"), self.keys), t_client_of(msg))
        elif kind == "init":
            await ws.send(json.dumps({"type": "hello", "commands": list(COMMANDS), "task": self.task}))
            for greeting in self.greeting():
                await ws.send(json.dumps(greeting))
            await ws.send(json.dumps(await self.on_command("tree", {})))
        elif kind == "command":
            name = msg.get("name")
            args = check_args(name, msg.get("args"))
            result = await self.on_command(name, args)
            await ws.send(json.dumps({"type": "result", "command": name, **result}))
        else:
            raise ValueError(f"unknown message type {kind[:40]!r}")

    # -- from the node thread ------------------------------------------------
    def send_frame(self, t_client: float, camera: int, png: bytes) -> None:
        self._broadcast(frame_packet(t_client, camera, png))

    def send_json(self, msg: dict) -> None:
        self._broadcast(json.dumps(msg))

    def _broadcast(self, data: str | bytes) -> None:
        if self._loop is None or not self.clients:
            return
        self._loop.call_soon_threadsafe(self._send_all, data)

    def _send_all(self, data: str | bytes) -> None:
        for ws in list(self.clients):
            task = asyncio.ensure_future(self._send_one(ws, data))
            self._sending.add(task)  # held until done: the loop keeps only weak references to tasks
            task.add_done_callback(self._sending.discard)

    async def _send_one(self, ws: ServerConnection, data: str | bytes) -> None:
        try:
            await ws.send(data)
        except ConnectionClosed:
            self.clients.discard(ws)


def t_client_of(msg: dict) -> float:
    """An action's ``t_client`` (ms, echoed with the frame it produces): a finite number, 0 if absent."""
    value = msg.get("t_client", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"t_client must be a number (ms), got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ValueError("t_client must be a finite number (ms)")
    return value


def _response(status: HTTPStatus, body: bytes, content_type: str, policy: str = "") -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),  # the page's URL may carry the token
        ]
    )
    if policy:
        headers["Content-Security-Policy"] = policy
    return Response(status.value, status.phrase, headers, body)
