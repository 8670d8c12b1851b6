"""The kube adapter's keep-alive transport against real loopback servers that misbehave the ways
API servers and the proxies in front of them do: closing idle connections, dropping one mid-way."""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gitops_kubepkg.kube import _Transport

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _read_request(conn: socket.socket) -> bool:
    """Read one request head (our requests here have no body); False when the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    return True


@contextmanager
def server(handle: Callable[[socket.socket, int], None]) -> Iterator[tuple[str, list[int]]]:
    """A loopback TCP server calling ``handle(connection, index)``; yields its URL and a list
    that records each accepted connection's index."""
    accepted: list[int] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            accepted.append(len(accepted))
            handle(self.request, accepted[-1])

    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", accepted
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_connection_is_reused_for_the_next_request() -> None:
    def keep_alive(conn: socket.socket, _: int) -> None:
        while _read_request(conn):
            conn.sendall(OK)

    with server(keep_alive) as (url, accepted):
        transport = _Transport(url, None, connect_timeout=5)
        for _ in range(3):
            assert transport.send("GET", "/api", None, {}, 5)[0] == 200
        transport.close()
    assert accepted == [0]


def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    def one_then_close(conn: socket.socket, _: int) -> None:
        if _read_request(conn):
            conn.sendall(OK)  # and close, without saying "Connection: close"

    with server(one_then_close) as (url, accepted):
        transport = _Transport(url, None, connect_timeout=5)
        assert transport.send("GET", "/a", None, {}, 5)[0] == 200
        # Let the FIN arrive, as it does after an idle timeout, long before the next request.
        threading.Event().wait(0.2)
        assert transport.send("GET", "/b", None, {}, 5)[0] == 200
        transport.close()
    assert accepted == [0, 1]


def test_a_reused_connection_dropped_mid_request_is_retried_once_on_a_new_one() -> None:
    def drop_the_second_request(conn: socket.socket, index: int) -> None:
        served = 0
        while _read_request(conn):
            if index == 0 and served == 1:
                return  # closes with the request unanswered: RemoteDisconnected for the client
            conn.sendall(OK)
            served += 1

    with server(drop_the_second_request) as (url, accepted):
        transport = _Transport(url, None, connect_timeout=5)
        assert transport.send("GET", "/a", None, {}, 5)[0] == 200
        assert transport.send("PATCH", "/b", None, {}, 5)[0] == 200
        transport.close()
    assert accepted == [0, 1]


def test_a_new_connection_that_fails_is_not_retried() -> None:
    def drop(conn: socket.socket, _: int) -> None:
        _read_request(conn)

    with server(drop) as (url, accepted):
        transport = _Transport(url, None, connect_timeout=5)
        with pytest.raises(http.client.RemoteDisconnected):
            transport.send("GET", "/a", None, {}, 5)
        transport.close()
    assert accepted == [0]


def test_each_thread_has_its_own_connection_and_close_ends_the_idle_ones() -> None:
    def keep_alive(conn: socket.socket, _: int) -> None:
        while _read_request(conn):
            conn.sendall(OK)

    with server(keep_alive) as (url, accepted):
        transport = _Transport(url, None, connect_timeout=5)
        threads = [
            threading.Thread(target=transport.send, args=("GET", "/", None, {}, 5))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(accepted) == 3
        transport.close()
        assert all(conn.sock is None for conn in transport._open)
