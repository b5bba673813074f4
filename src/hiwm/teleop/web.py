"""The browser playground's server: one page and one websocket, in the Hi-WM demo's protocol.

Client -> server (JSON text): ``{"type": "init", "task": ...}``; ``{"type": "action", "action":
{"w": 0|1, ...}, "t_client": ms}``; ``{"type": "command", "name": ..., "args": {...}}`` for the
buttons (pause, take_over, hand_back, rollback, fork, label, reset, tree).
Server -> client: binary frames, an 8-byte big-endian float64 echo of the ``t_client`` of the
action that produced the frame (0 when none did), then the PNG; and JSON text: ``status``,
``result`` (of a command), ``tree`` and ``error`` messages.

It runs its asyncio loop in a thread of its own; the node calls :meth:`send_frame` and
:meth:`send_json` from its thread. Binds to 127.0.0.1 by default; any other address needs a
token, given by the page as ``?token=...``. Messages over ``max_message_bytes`` close that
connection (code 1009); malformed ones get an ``error`` reply; the server keeps running.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hiwm.teleop.keys import parse_keys

COMMANDS = ("pause", "take_over", "hand_back", "rollback", "fork", "label", "reset", "tree")


@dataclass
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port (the chosen one is logged)
    token: str = ""  # required when host is not a loopback address
    max_message_bytes: int = 4096

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"binding to {self.host!r} exposes the robot: set a token (parameter 'token')")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def frame_packet(t_client: float, image: bytes) -> bytes:
    """A binary frame: big-endian float64 ``t_client`` echo, then the encoded image."""
    return struct.pack(">d", t_client) + image


class PlaygroundServer:
    """Serves the page and the websocket; ``on_action(keys, t_client)`` and ``await on_command(name,
    args)`` run in the server thread (a command's result dict is sent back); ``greeting()`` lists the
    messages a newly connected page gets (phase, status)."""

    def __init__(
        self,
        cfg: WebConfig,
        on_action: Callable[[dict[str, bool], float], None],
        on_command: Callable[[str, dict], Awaitable[dict]],
        greeting: Callable[[], list[dict]] = list,
        log: logging.Logger | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_action, self.on_command, self.greeting = on_action, on_command, greeting
        self.log = log or logging.getLogger("hiwm.teleop.web")
        self.page = resources.files("hiwm.teleop").joinpath("static/playground.html").read_bytes()
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

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if not self._authorized(request.path):
            return _response(HTTPStatus.FORBIDDEN, b"token required\n", "text/plain")
        if path == "/ws":
            return None  # websocket handshake
        if path in ("/", "/index.html"):
            return _response(HTTPStatus.OK, self.page, "text/html; charset=utf-8")
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
            msg = json.loads(raw)
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise ValueError("a message is a JSON object with a string 'type'")
            kind = msg["type"]
            if kind == "action":
                t_client = float(msg.get("t_client", 0.0))
                self.on_action(parse_keys(msg.get("action")), t_client)
            elif kind in ("init", "set_task"):
                await ws.send(json.dumps({"type": "hello", "commands": list(COMMANDS)}))
                for greeting in self.greeting():
                    await ws.send(json.dumps(greeting))
                await ws.send(json.dumps(await self.on_command("tree", {})))
            elif kind == "command":
                name, args = msg.get("name"), msg.get("args") or {}
                if name not in COMMANDS or not isinstance(args, dict):
                    raise ValueError(f"unknown command {name!r}; commands are {list(COMMANDS)}")
                result = await self.on_command(name, args)
                await ws.send(json.dumps({"type": "result", "command": name, **result}))
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except (ValueError, TypeError, KeyError) as exc:  # json.JSONDecodeError is a ValueError
            self.refused += 1
            self.log.warning(f"refused a client message: {exc}")
            await ws.send(json.dumps({"type": "error", "message": str(exc)}))

    # -- from the node thread ------------------------------------------------
    def send_frame(self, t_client: float, png: bytes) -> None:
        self._broadcast(frame_packet(t_client, png))

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


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers(
        [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
    )
    return Response(status.value, status.phrase, headers, body)
