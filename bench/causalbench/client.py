"""HTTP to the servers under test, on loopback: one request on a fresh
connection, or a persistent connection (the probes and the Python load
generator)."""

import http.client

from .base import ToolError


def http_request(addr, method, path, body=None, headers=None, timeout=10):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = {"Content-Type": "application/json"}
        if headers:
            h.update(headers)
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Client:
    """A persistent HTTP/1.1 connection (for probes)."""

    def __init__(self, addr, timeout=5):
        self.addr = addr
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                host, port = self.addr.rsplit(":", 1)
                self.conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
            try:
                h = {"Content-Type": "application/json"}
                if headers:
                    h.update(headers)
                self.conn.request(method, path, body=body, headers=h)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return resp.status, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        raise ToolError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
