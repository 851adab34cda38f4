"""Kept-alive connections of the worker threads (``connections.Connections``): one
the server closed while it was idle is never handed out again, so a request
that may not be sent twice (a Vagon create) is not sent into it; one still
open is. A real server on loopback, closing when told."""

from __future__ import annotations

import http.client
import socket
import threading

from vagonfs.remote import connections
from vagonfs.remote.http import TIMEOUT
from support import wait_until

REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


def _serve(listener: socket.socket, close_now: threading.Event,
           finished: threading.Event) -> None:
    """Answers one request on each of two connections; closes the first when
    told, the second once the test is finished with it."""
    kept = []
    for _ in range(2):
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(REPLY)
        kept.append(conn)
        if len(kept) == 1:
            close_now.wait(10)
            conn.close()
    finished.wait(10)
    kept[1].close()


def _answered(pool: connections.Connections, origin: tuple) -> http.client.HTTPConnection:
    conn = pool.connect(origin)
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.read() == b"ok"
    pool.give_back(origin, conn)
    return conn


def test_an_idle_connection_the_server_closed_is_dropped_and_an_open_one_reused():
    listener = socket.create_server(("127.0.0.1", 0))
    origin = ("http", "127.0.0.1", listener.getsockname()[1])
    close_now, finished = threading.Event(), threading.Event()
    server = threading.Thread(target=_serve, args=(listener, close_now, finished), daemon=True)
    server.start()
    pool = connections.Connections(TIMEOUT)
    try:
        closed = _answered(pool, origin)
        close_now.set()
        wait_until(lambda: connections._readable(closed), 2, message="the server's FIN never arrived")
        assert pool.take(origin) is None
        assert closed.sock is None  # closed here too, not left open

        still_open = _answered(pool, origin)
        assert pool.take(origin) is still_open
        still_open.close()
    finally:
        close_now.set()
        finished.set()
        server.join(5)
        listener.close()
