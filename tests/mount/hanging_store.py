"""A store that hangs, for the tests of what must end whatever the store does."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class HangingStore:
    """A plain TCP server on loopback that accepts connections and reads what
    is sent, and never answers: a store that hangs."""

    def __init__(self, port: int = 0):
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._closed = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            self._connections.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    @staticmethod
    def _swallow(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def close(self) -> None:
        """Free the port for the emulator: the blocked ``accept`` woken, and
        each connection reset (no TIME_WAIT left on the port)."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._connections:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
