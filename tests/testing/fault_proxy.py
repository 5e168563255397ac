"""A fault-injecting HTTP proxy on 127.0.0.1, for object-store tests.

    proxy = FaultProxy(upstream_port)       # listens on a free 127.0.0.1 port
    proxy.arm(nth=7, fault=CUT)             # the 7th request from now is cut
    ... point the filesystem at proxy.endpoint and run an export ...
    proxy.counts()                          # requests seen, faults injected
    proxy.close()

Every request is forwarded to `127.0.0.1:<upstream_port>` unchanged (the Host
header included: the GCS emulator builds upload URLs from it, so uploads keep
going through the proxy), except the ones chosen by `arm`, which get:

* `ERROR`: a 503 answer (both S3 and GCS clients retry it);
* `CUT`: the connection closed before the request reaches the server;
* `LOSE_REPLY`: the request is forwarded and done, then the connection is
  closed before the answer (the client sees a failure of a done request).

No other address is ever contacted. Runs in threads of the calling process.
"""

import http.client
import http.server
import socket
import threading
from typing import List, NamedTuple, Optional, Tuple

ERROR = 'error'
CUT = 'cut'
LOSE_REPLY = 'lose_reply'
FAULTS = (ERROR, CUT, LOSE_REPLY)
# Hop-by-hop headers (RFC 9110 7.6.1), and the ones the proxy recomputes.
_NOT_FORWARDED = frozenset(
    ('connection', 'keep-alive', 'proxy-connection', 'transfer-encoding',
     'te', 'trailer', 'upgrade', 'expect', 'content-length'))
_ERROR_BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown'
               b'</Code><Message>injected by fault_proxy</Message></Error>')


class Counts(NamedTuple):
  requests: int  # requests received since the last `arm`
  faults: int    # of those, answered with a fault


class FaultProxy:
  """A threaded HTTP/1.1 proxy that injects faults into chosen requests."""

  def __init__(self, upstream_port: int):
    self.upstream_port = upstream_port
    self._lock = threading.Lock()
    self._nth: Optional[int] = None
    self._fault = ERROR
    self._persist = False
    self._requests = 0
    self._faults = 0
    self.log: List[Tuple[int, str, str, str]] = []  # (n, method, path, what)
    handler = _handler_class(self)
    self._server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    self._server.daemon_threads = True
    self.port = self._server.server_address[1]
    self.endpoint = f'http://127.0.0.1:{self.port}'
    self._thread = threading.Thread(target=self._server.serve_forever,
                                    daemon=True)
    self._thread.start()

  def arm(self, nth: Optional[int] = None, fault: str = ERROR,
          persist: bool = False) -> None:
    """Restarts the request count and chooses the next fault.

    Args:
      nth: the request (1 = the next one) that gets `fault`; None: none.
      fault: ERROR, CUT or LOSE_REPLY.
      persist: every request from the `nth` on gets the fault (an outage),
        not only the `nth`.
    """
    if fault not in FAULTS:
      raise ValueError(f'fault: expected one of {FAULTS}, got {fault!r}')
    with self._lock:
      self._nth, self._fault, self._persist = nth, fault, persist
      self._requests = self._faults = 0
      self.log = []

  def counts(self) -> Counts:
    with self._lock:
      return Counts(self._requests, self._faults)

  def _next(self, method: str, path: str) -> Optional[str]:
    """Counts a request; returns the fault it gets, or None."""
    with self._lock:
      self._requests += 1
      n = self._requests
      hit = self._nth is not None and (
          n == self._nth or (self._persist and n > self._nth))
      if hit:
        self._faults += 1
      self.log.append((n, method, path, self._fault if hit else 'pass'))
      return self._fault if hit else None

  def close(self) -> None:
    self._server.shutdown()
    self._server.server_close()
    self._thread.join()

  def __enter__(self) -> 'FaultProxy':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
  if 'chunked' in handler.headers.get('Transfer-Encoding', '').lower():
    parts = []
    while True:
      size = int(handler.rfile.readline().split(b';')[0].strip(), 16)
      if size == 0:
        while handler.rfile.readline() not in (b'\r\n', b'\n', b''):
          pass  # trailers
        return b''.join(parts)
      parts.append(handler.rfile.read(size))
      handler.rfile.readline()
  return handler.rfile.read(int(handler.headers.get('Content-Length') or 0))


def _handler_class(proxy: FaultProxy):
  """The request handler class bound to `proxy`."""

  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def _cut(self) -> None:
      self.close_connection = True
      try:
        self.connection.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass

    def _forward(self) -> None:
      body = _read_body(self)
      fault = proxy._next(self.command, self.path)  # pylint: disable=protected-access
      if fault == CUT:
        self._cut()
        return
      if fault == ERROR:
        self.send_response(503)
        self.send_header('Content-Type', 'application/xml')
        self.send_header('Content-Length', str(len(_ERROR_BODY)))
        self.end_headers()
        self.wfile.write(_ERROR_BODY)
        return
      headers = {k: v for k, v in self.headers.items()
                 if k.lower() not in _NOT_FORWARDED}
      upstream = http.client.HTTPConnection('127.0.0.1', proxy.upstream_port,
                                            timeout=120)
      try:
        upstream.request(self.command, self.path, body=body, headers=headers)
        reply = upstream.getresponse()
        data = reply.read()
      finally:
        upstream.close()
      if fault == LOSE_REPLY:
        self._cut()
        return
      self.send_response_only(reply.status, reply.reason)
      for key, value in reply.getheaders():
        if key.lower() not in _NOT_FORWARDED:
          self.send_header(key, value)
      if self.command == 'HEAD':
        # A HEAD answer carries the object's length, and no body.
        length = reply.getheader('Content-Length')
        if length is not None:
          self.send_header('Content-Length', length)
      else:
        self.send_header('Content-Length', str(len(data)))
      self.end_headers()
      if self.command != 'HEAD':
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      pass

  return Handler
