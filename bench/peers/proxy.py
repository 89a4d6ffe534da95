"""A loopback TCP proxy in front of Redis that counts round trips (request/reply turns).

A round trip is counted each time a client sends after the server last spoke on that
connection, so a pipeline or a Lua script call is one, and a blocking BRPOP is one.
"""

from __future__ import annotations

import socket
import threading


class RoundTripProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target_port = host, target_port
        self.turns = 0
        self._lock = threading.Lock()
        self._server = socket.create_server((host, 0))
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.host, self.target_port))
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            state = {"client_spoke_last": False}
            threading.Thread(target=self._pump, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or not self.relay(data, from_client, state):
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def relay(self, data: bytes, from_client: bool, state: dict) -> bool:
        """Called with each chunk before it is passed on; False cuts the connection instead
        (a subclass may lose replies on purpose). Here: count the round trips."""
        with self._lock:
            if from_client and not state["client_spoke_last"]:
                self.turns += 1
            state["client_spoke_last"] = from_client
        return True

    def close(self) -> None:
        self._closed = True
        self._server.close()
