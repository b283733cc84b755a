"""A throwaway `redis-server` on a free loopback port (no persistence), for the tests of the Redis online store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from processes import free_port

INSTALL_HINT = "redis-server is not installed: apt-get install -y redis-server (make test-integration does it)"


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` in ``folder``; `stop` ends it."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--dir", str(folder)]
        self.proc = subprocess.Popen(command, stdout=(folder / "redis.log").open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
