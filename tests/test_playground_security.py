"""The playground against an outside website, a hostile DDS peer and a careless client.

Real processes over DDS, a real headless Chromium, real HTTP servers: a page of another origin must
not reach the websocket, DNS rebinding must not reach the page, text from the graph must never run
as script, a bad message gets an error reply and keeps the connection, and the token never becomes
a ROS parameter.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import wait_for
from test_playground import CHROMEDRIVER, CHROMIUM, chrome, free_port, wait_js

from hiwm.comm import create_node, new_message
from hiwm.comm.qos import KEEP_ALL, LATCHED
from hiwm.teleop.arbiter import AUTONOMOUS, PAUSED
from hiwm.teleop.web import PlaygroundServer, WebConfig

needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed"
)
SECRET = "s3cret-playground-token-4711"


def start_web(procs, ns: str, *params: str, env: dict | None = None):
    port = free_port()
    args = ["--ros-args", "-r", f"__ns:={ns}", "-p", f"port:={port}"]
    for p in params:
        args += ["-p", p]
    web = procs.python("hiwm.nodes.teleop_web", *args, env=env)
    assert wait_for(lambda: "playground at http://" in procs.output(web) or web.poll() is not None, 30)
    assert web.poll() is None, procs.output(web)
    return port, web


def http_get(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def ws_status(port: int, host: str | None = None, origin: str | None = None, query: str = "") -> int:
    """The HTTP status a websocket handshake to the playground gets (101: connected), sent from this
    machine with the given Host (through a socket to 127.0.0.1) and Origin headers."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        with connect(f"ws://{host or f'127.0.0.1:{port}'}/ws{query}", sock=sock, origin=origin, open_timeout=20):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


class EvilSite:
    """Another website the operator visits: a tiny HTTP server on another loopback address serving a
    page whose script tries the playground's websocket, as a page from http://evil.example could."""

    def __init__(self, target_port: int, address: str = "127.0.0.2") -> None:
        urls = json.dumps([f"ws://127.0.0.1:{target_port}/ws", f"ws://localhost:{target_port}/ws"])
        page = (
            "<!doctype html><title>cute cats</title><script>\n"
            "window.evil = {events: [], messages: 0};\n"
            "for (const url of URLS) {\n"
            "  const ws = new WebSocket(url); ws.binaryType = 'arraybuffer';\n"
            "  ws.onopen = () => { window.evil.events.push('open ' + url);\n"
            "    ws.send(JSON.stringify({type: 'init'}));\n"
            "    ws.send(JSON.stringify({type: 'command', name: 'pause', args: {}}));\n"
            "    ws.send(JSON.stringify({type: 'action', action: {d: 1}, t_client: 1})); };\n"
            "  ws.onmessage = () => { window.evil.messages += 1; };\n"
            "  ws.onclose = (e) => window.evil.events.push('close ' + e.code);\n"
            "}\n</script>"
        ).replace("URLS", urls)
        body = page.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def graph(procs):
    """teleop_web and the arbiter in /sec; a watcher of the phase and of operator actions."""
    ns = "/sec"
    procs.python("hiwm.nodes.arbiter", "--ros-args", "-r", f"__ns:={ns}")
    port, web = start_web(procs, ns)
    node = create_node("playground_security_test")
    phases: list = []
    actions: list = []
    node.create_subscription("hiwm_msgs/msg/Phase", f"{ns}/arbiter/phase", phases.append, LATCHED)
    node.create_subscription("hiwm_msgs/msg/ActionChunk", f"{ns}/operator/action", actions.append, KEEP_ALL)
    assert node.spin_until(lambda: phases and phases[-1].phase == AUTONOMOUS, 30.0)
    yield port, web, node, phases, actions
    node.destroy()


@needs_browser
@pytest.mark.probe(
    "a page from another origin (127.0.0.2, another port) opens ws://127.0.0.1:<port>/ws; DNS rebinding",
    "handshake refused (403): it neither watches nor commands; the playground's own page still works",
)
def test_other_origins_and_rebinding_cannot_reach_the_websocket(graph, procs):
    port, web, node, phases, actions = graph
    evil = EvilSite(port)
    same_host = EvilSite(port, "127.0.0.1")  # same machine and address, another port: another origin
    browser = chrome("--host-resolver-rules=MAP rebind.test 127.0.0.1")
    try:
        for site in (evil, same_host):
            browser.get(site.url)
            wait_js(browser, "window.evil && window.evil.events.length >= 2", 30)  # each attempt opened or closed
            events = browser.execute_script("return window.evil.events")
            assert not [e for e in events if e.startswith("open")], events
            assert browser.execute_script("return window.evil.messages") == 0  # no frame, no status, no tree
        node.spin_until(lambda: False, 1.0)
        assert phases[-1].phase == AUTONOMOUS and not actions  # the pause and the key never arrived
        assert "may not connect" in procs.output(web)

        # DNS rebinding: evil.example's name now resolves to 127.0.0.1; the server refuses its Host
        browser.get(f"http://rebind.test:{port}/")
        assert "is not this server's" in browser.find_element("tag name", "body").text
        assert browser.execute_script("return typeof window.hiwm") == "undefined"

        # the playground's own page, under either loopback name, connects and commands
        for host in ("127.0.0.1", "localhost"):
            browser.get(f"http://{host}:{port}/")
            wait_js(browser, "window.hiwm.open && window.hiwm.phase === 'AUTONOMOUS'", 30)
        browser.find_element("id", "pause").click()
        assert node.spin_until(lambda: phases[-1].phase == PAUSED, 15.0)
    finally:
        browser.quit()
        evil.close()
        same_host.close()
    assert web.poll() is None


@pytest.mark.probe(
    "websocket handshakes with a foreign, 'null' or missing Origin and a foreign Host (a script on this machine)",
    "foreign Origin or Host refused with 403; no Origin accepted from loopback (scripts, benchmarks)",
)
def test_handshake_checks_origin_and_host(procs):
    port, web = start_web(procs, "/hs")
    assert ws_status(port) == 101  # no Origin, from loopback: a script or a benchmark
    assert ws_status(port, origin=f"http://127.0.0.1:{port}") == 101
    assert ws_status(port, host=f"localhost:{port}", origin=f"http://localhost:{port}") == 101
    assert ws_status(port, origin="http://evil.example") == 403
    assert ws_status(port, origin="null") == 403
    assert ws_status(port, origin=f"http://127.0.0.2:{port}") == 403
    assert ws_status(port, origin=f"http://localhost:{port}") == 403  # the page's origin must be the Host
    assert ws_status(port, host=f"evil.example:{port}", origin=f"http://evil.example:{port}") == 403
    assert ws_status(port, host=f"127.0.0.1:{port + 1}") == 403  # another port is another server
    status, body = http_get(f"http://127.0.0.1:{port}/", {"Host": "evil.example"})
    assert status == 403 and "not this server's" in body
    status, body = http_get(f"http://127.0.0.1:{port}/")
    assert status == 200 and "hiwm playground" in body
    assert web.poll() is None and "Traceback" not in procs.output(web)


def test_host_rules_beyond_loopback():
    """Bound to every interface (token required), Host may be an address or this machine's name;
    bound to one address, that address or a configured name; never a stranger's name."""
    wild = PlaygroundServer(WebConfig("0.0.0.0", 8765, token="t"), lambda *_: None, None)
    assert wild.host_allowed("192.168.1.20", 8765) and wild.host_allowed(socket.gethostname().lower(), 8765)
    assert not wild.host_allowed("evil.example", 8765) and not wild.host_allowed("192.168.1.20", 8766)
    one = PlaygroundServer(WebConfig("10.0.0.5", 8765, "t", allowed_hosts=("Lab-PC",)), lambda *_: None, None)
    assert one.host_allowed("10.0.0.5", 8765) and one.host_allowed("lab-pc", 8765)
    assert not one.host_allowed("10.0.0.6", 8765) and not one.host_allowed("evil.example", 8765)


@needs_browser
@pytest.mark.probe(
    "a DDS peer publishes a TaskStatus whose episode_id holds HTML; the branch cache's replies quote it",
    "the page shows it as text (status line, tree, command results); no script runs",
)
def test_text_from_the_graph_never_runs_as_script(procs, tmp_path):
    ns = "/xss"
    ros = ["--ros-args", "-r", f"__ns:={ns}"]
    procs.python("tests.peers.world_model_peer", *ros)
    cache = procs.python("hiwm.nodes.branch_cache", *ros, "-p", f"db:={tmp_path / 'cache.db'}")
    port, web = start_web(procs, ns)
    node = create_node("xss_peer")
    status_pub = node.create_publisher("hiwm_msgs/msg/TaskStatus", f"{ns}/task/status", KEEP_ALL)
    reset = node.create_client("hiwm_msgs/srv/Reset", f"{ns}/world_model/reset")
    lister = node.create_client("hiwm_msgs/srv/List", f"{ns}/branch_cache/list")
    labeler = node.create_client("hiwm_msgs/srv/Label", f"{ns}/branch_cache/label")
    status_payload = "<img src=x onerror=window.pwnedStatus=1><b>bold</b>"
    browser = chrome()
    try:
        assert reset.wait_for_service(30) and lister.wait_for_service(30) and labeler.wait_for_service(30)
        assert reset.call(new_message("hiwm_msgs/srv/Reset_Request", seed=1), timeout=10).success

        def branches() -> list[str]:
            r = lister.call(new_message("hiwm_msgs/srv/List_Request", what="branches", session_id="sess-1"), timeout=10)
            return list(r.ids) if r.success else []

        assert wait_for(lambda: branches(), 20), procs.output(cache)
        label = new_message("hiwm_msgs/srv/Label_Request", branch_id=branches()[0], labels=["<b>x</b>"])
        assert not labeler.call(label, timeout=10).success  # labels are plain words already
        label = new_message("hiwm_msgs/srv/Label_Request", branch_id=branches()[0], labels=["success"])
        assert labeler.call(label, timeout=10).success

        def status(episode_id: str) -> None:
            assert node.spin_until(lambda: status_pub.matched_count() > 0, 20)
            msg = new_message("hiwm_msgs/msg/TaskStatus", header=node.header(), episode_id=episode_id, world="model")
            status_pub.publish(msg)

        # the session's tree, drawn from the branch cache's reply
        browser.get(f"http://127.0.0.1:{port}/")
        wait_js(browser, "window.hiwm.open", 30)
        status("sess-1")
        wait_js(browser, "window.hiwm.status && window.hiwm.status.episode_id === 'sess-1'", 20)
        browser.refresh()  # the page asks for the tree of the session teleop_web now follows
        wait_js(browser, "window.hiwm.tree && window.hiwm.tree.available && window.hiwm.tree.branches.length", 30)
        wait_js(browser, "document.getElementById('tree').textContent.includes('success')", 10)

        # the branch cache's "no session" reply quoting the peer's episode_id
        status(status_payload)
        wait_js(browser, f"window.hiwm.status && window.hiwm.status.episode_id === {json.dumps(status_payload)}", 20)
        browser.refresh()
        wait_js(browser, "window.hiwm.tree && window.hiwm.tree.available === false", 30)
        tree_text = browser.execute_script("return document.getElementById('tree').textContent")
        assert status_payload in tree_text, tree_text
        browser.find_element("id", "fork").click()  # its failure quotes the session too, in the log
        wait_js(browser, "window.hiwm.results.some(r => r.command === 'fork')", 30)
        assert status_payload in browser.find_element("id", "log").text
        assert status_payload in browser.find_element("id", "world").text
        time.sleep(1.0)  # an injected <img src=x> would have failed to load and run onerror by now
        assert browser.execute_script("return window.pwnedStatus") is None
        assert browser.execute_script("return document.querySelectorAll('img, #tree b, #log b').length") == 0
        policy = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20).headers["Content-Security-Policy"]
        assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    finally:
        browser.quit()
        node.destroy()
    assert web.poll() is None and cache.poll() is None


BAD_MESSAGES = {  # raw text -> what the error reply must say
    '{"type": "action", "action": {"d": 1}, "t_client": ' + "9" * 400 + "}": "t_client must be a finite number",
    '{"type": "action", "action": {"d": 1}, "t_client": 1e400}': "t_client must be a finite number",
    '{"type": "action", "action": {"d": 1}, "t_client": NaN}': "t_client must be a finite number",
    '{"type": "action", "action": {"d": 1}, "t_client": "soon"}': "t_client must be a number",
    '{"type": "action", "action": {"d": 10}}': "must be 0 or 1",
    json.dumps({"type": "command", "name": "reset", "args": {"seed": 2**70}}): "seed must be a whole number",
    json.dumps({"type": "command", "name": "reset", "args": {"seed": "3"}}): "seed must be a whole number",
    '{"type": "command", "name": "rollback", "args": {"steps": 1e400}}': "steps must be a whole number",
    json.dumps({"type": "command", "name": "rollback", "args": {"steps": 0}}): "steps must be a whole number",
    json.dumps({"type": "command", "name": "rollback", "args": {"steps": 2.5}}): "steps must be a whole number",
    json.dumps({"type": "command", "name": "rollback", "args": {"steps": True}}): "steps must be a whole number",
    json.dumps({"type": "command", "name": "rollback", "args": [3]}): "args must be an object",
    json.dumps({"type": "command", "name": "rollback", "args": {"n": 3}}): "unknown argument(s) ['n']",
    json.dumps({"type": "command", "name": "pause", "args": {"now": 1}}): "takes no arguments",
    json.dumps({"type": "command", "name": "label", "args": {"labels": "success"}}): "list of strings",
    json.dumps({"type": "command", "name": "fork", "args": {"node_id": 7}}): "node_id must be a string",
    json.dumps({"type": "command", "name": "explode"}): "unknown command 'explode'",
    json.dumps({"type": "command", "name": ["pause"]}): "unknown command",
    json.dumps({"type": 5}): "string 'type'",
    json.dumps({"type": "teleport"}): "unknown message type",
    "[" * 2000 + "]" * 2000: "too deeply nested",
    "{not json": "Expecting property name",
}


@pytest.mark.probe(
    "playground messages with numbers too large for a float or an int, wrong argument lists, bad types",
    "an error reply naming the problem, the connection stays open (no 1011), the node keeps serving",
)
def test_every_bad_message_gets_an_error_reply(procs):
    from websockets.sync.client import connect

    port, web = start_web(procs, "/msg")
    with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=20, max_size=None) as ws:
        for raw, expected in BAD_MESSAGES.items():
            ws.send(raw)
            reply = json.loads(ws.recv(20))
            assert reply["type"] == "error" and expected in reply["message"], (raw[:80], reply)
        ws.send(json.dumps({"type": "init"}))
        assert json.loads(ws.recv(20))["type"] == "hello"  # the same connection still works
    log = procs.output(web)
    assert web.poll() is None and "Traceback" not in log and "refused a client message" in log


@pytest.mark.probe(
    "the playground token passed as a ROS parameter (-p token:=...), or read back with `ros2 param`",
    "-p token refused (exit 2); the token comes from token_file or $HIWM_TELEOP_TOKEN and no parameter holds it",
)
def test_the_token_is_never_a_parameter(procs, tmp_path):
    proc = procs.python("hiwm.nodes.teleop_web", "--ros-args", "-p", f"token:={SECRET}")
    assert proc.wait(30) == 2 and "not a parameter" in procs.output(proc), procs.output(proc)
    for content in ("", None):  # an empty token file, a missing one
        path = tmp_path / f"token-{content is None}"
        if content is not None:
            path.write_text(content)
        proc = procs.python("hiwm.nodes.teleop_web", "--ros-args", "-p", f"token_file:={path}")
        assert proc.wait(30) == 2 and "secret file" in procs.output(proc), procs.output(proc)

    # from the environment
    port, web = start_web(procs, "/tok_env", env={"HIWM_TELEOP_TOKEN": SECRET})
    assert http_get(f"http://127.0.0.1:{port}/")[0] == 403
    assert http_get(f"http://127.0.0.1:{port}/?token=wrong")[0] == 403
    assert http_get(f"http://127.0.0.1:{port}/?token={SECRET}")[0] == 200
    assert ws_status(port) == 403 and ws_status(port, query=f"?token={SECRET}") == 101

    # from a file, on each backend there is; under rclpy every parameter is readable with `ros2 param`
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    token_file.chmod(0o600)
    backends = ["dds"]
    if importlib.util.find_spec("rclpy") is not None and shutil.which("ros2"):
        backends.append("rclpy")
    for backend in backends:
        ns = f"/tok_{backend}"
        port, web = start_web(procs, ns, f"token_file:={token_file}", env={"HIWM_BACKEND": backend})
        assert http_get(f"http://127.0.0.1:{port}/?token={SECRET}")[0] == 200
        assert ws_status(port) == 403 and ws_status(port, query=f"?token={SECRET}") == 101
        assert SECRET.encode() not in Path(f"/proc/{web.pid}/cmdline").read_bytes()
        if backend == "rclpy":
            dump = subprocess.run(
                ["ros2", "param", "dump", f"{ns}/teleop_web"], capture_output=True, text=True, timeout=60,
                env={**os.environ, "ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]},
            )  # fmt: skip
            assert dump.returncode == 0 and "token_file" in dump.stdout, dump.stdout + dump.stderr
            assert SECRET not in dump.stdout
        assert web.poll() is None


def test_the_hiwm_graph_passes_a_token_file_not_a_token():
    from hiwm.launch.supervisor import load_graph, plan

    nodes = {n.label: n.argv for n in plan(load_graph("hiwm"), {"host": "0.0.0.0", "token_file": "/etc/hiwm/token"})}
    argv = " ".join(nodes["teleop_web"])
    assert "token_file:=/etc/hiwm/token" in argv and "host:=0.0.0.0" in argv and "token:=" not in argv
