"""Request smuggling, differentially: raw request vectors (the published smuggling families and
what outside testers found) sent through the gateway to a recording backend that counts exactly
the requests it receives. For each vector: the status the client gets, whether the connection is
closed, and that the backend saw exactly the requests the client meant (none for a refused one,
never a second, smuggled one). A valid vector is followed by a second request on the same
connection, which proves the framing stayed in step.

Every vector is also a file of the codec's fuzz corpus (tests/fuzz/http_codec_corpus/smuggle_*);
`python3 test_smuggling.py --write-corpus` rewrites those files from VECTORS.
"""

import os
import re
import socket
import sys
import threading
import unittest

from harness import (SOURCE_DIR, ConnClosed, RawConn, SluiceTestCase, addr, route, service,
                     wait_until)

LIMITS = {
    "max_header_bytes": 4096,
    "max_uri_bytes": 1024,
    "max_body_bytes": 65536,
    "max_headers": 20,
    "header_timeout": "2s",
}
# Bodies stream upstream as they arrive (no request buffering): the head, and the body so far, can
# be on their way to the backend when a later byte turns out bad.
STREAMING = dict(LIMITS, request_buffer_bytes=0)

CORPUS_DIR = os.path.join(SOURCE_DIR, "tests", "fuzz", "http_codec_corpus")

H = b"Host: t\r\n"
CHUNKED = b"POST /v HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"


def post(headers, body=b""):
    return b"POST /v HTTP/1.1\r\n" + H + headers + b"\r\n" + body


class V:
    """A vector: raw bytes; `answers`: the statuses the client gets, in order; `closed`: the
    gateway closes the connection after them; `backend`: (method, target, body) of each request
    the backend must see, in order."""

    def __init__(self, name, raw, answers, closed, backend=(), why=""):
        self.name, self.raw, self.answers, self.closed = name, raw, answers, closed
        self.backend = list(backend)
        self.why = why


def refused(name, raw, status=400, why=""):
    return V(name, raw, [status], True, [], why)


def served(name, raw, body=b"hello", target="/v", method="POST", why=""):
    return V(name, raw, [200], False, [(method, target, body)], why)


VECTORS = [
    # Chunk framing (issue 11): the two bytes after chunk data must be CRLF.
    refused("chunk_terminator_smuggle", CHUNKED + b"5\r\nhelloXX0\r\n\r\n"
            b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"),
    refused("chunk_terminator_resplit", CHUNKED + b"2\r\nheZZ3\r\nlloQQ0\r\n\r\n"),
    refused("chunk_terminator_missing", CHUNKED + b"5\r\nhello0\r\n\r\n"),
    refused("chunk_terminator_bare_lf", CHUNKED + b"5\r\nhello\n0\r\n\r\n"),
    # Transfer-Encoding obfuscations.
    refused("te_xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    refused("te_chunked_identity",
            post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n")),
    refused("te_identity_chunked_lines", post(b"Transfer-Encoding: chunked\r\n"
                                              b"Transfer-Encoding: identity\r\n", b"0\r\n\r\n")),
    refused("te_duplicate", post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                                 b"0\r\n\r\n")),
    refused("te_gzip_chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n")),
    refused("te_vertical_tab", post(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n")),
    refused("te_tab_before_colon", post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n")),
    refused("te_space_before_colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n")),
    refused("te_line_starts_with_space",
            b"POST /v HTTP/1.1\r\n Transfer-Encoding: chunked\r\n" + H + b"\r\n0\r\n\r\n"),
    refused("te_folded", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n")),
    refused("te_http10", b"POST /v HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    served("te_space_in_value", post(b"Transfer-Encoding:   chunked\r\n",
                                     b"5\r\nhello\r\n0\r\n\r\n")),
    served("te_tab_in_value", post(b"Transfer-Encoding:\tchunked   \r\n",
                                   b"5\r\nhello\r\n0\r\n\r\n")),
    refused("te_trailing_tab", post(b"Transfer-Encoding: chunked\t\r\n", b"0\r\n\r\n"),
            why="llhttp 8.1 does not take a HTAB after the coding"),
    served("te_uppercase", post(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    # Content-Length variants.
    refused("cl_duplicate_equal", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    refused("cl_duplicate_different",
            post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    refused("cl_list_equal", post(b"Content-Length: 5, 5\r\n", b"hello")),
    refused("cl_list_different", post(b"Content-Length: 5, 6\r\n", b"hello!")),
    refused("cl_plus", post(b"Content-Length: +5\r\n", b"hello")),
    refused("cl_negative", post(b"Content-Length: -1\r\n", b"")),
    refused("cl_hex", post(b"Content-Length: 0x5\r\n", b"hello")),
    refused("cl_overflow", post(b"Content-Length: 99999999999999999999999\r\n", b"hello")),
    refused("cl_over_body_limit", post(b"Content-Length: 1000000\r\n"), 413),
    refused("cl_with_te", post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                               b"0\r\n\r\n")),
    refused("te_with_cl", post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                               b"0\r\n\r\n")),
    served("cl_leading_zero", post(b"Content-Length: 05\r\n", b"hello"),
           why="1*DIGIT (RFC 9110 8.6); forwarded as Content-Length: 5"),
    # Line endings, control bytes, folding, field names.
    refused("bare_lf_request_line", b"GET /v HTTP/1.1\n" + H + b"\r\n"),
    refused("bare_lf_header", b"GET /v HTTP/1.1\r\nHost: t\nX-A: 1\r\n\r\n"),
    refused("bare_lf_end_of_head", b"GET /v HTTP/1.1\r\n" + H + b"\n"),
    refused("bare_cr_header", b"GET /v HTTP/1.1\r\nHost: t\rX-A: 1\r\n\r\n"),
    refused("bare_cr_request_line", b"GET /v\r HTTP/1.1\r\n" + H + b"\r\n"),
    refused("nul_in_header_name", b"GET /v HTTP/1.1\r\n" + H + b"X-\x00A: 1\r\n\r\n"),
    refused("nul_in_header_value", b"GET /v HTTP/1.1\r\n" + H + b"X-A: 1\x002\r\n\r\n"),
    refused("nul_in_target", b"GET /v\x00x HTTP/1.1\r\n" + H + b"\r\n"),
    refused("obs_fold", b"GET /v HTTP/1.1\r\n" + H + b"X-A: 1\r\n 2\r\n\r\n"),
    refused("cl_space_before_colon", post(b"Content-Length : 5\r\n", b"hello")),
    # Chunk sizes, extensions, trailers.
    refused("chunk_size_0x", CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n"),
    refused("chunk_size_space_ext", CHUNKED + b"5 ;ext\r\nhello\r\n0\r\n\r\n"),
    refused("chunk_size_huge", CHUNKED + b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    refused("chunk_size_negative", CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n"),
    refused("chunk_ext_oversized", CHUNKED + b"5;x=" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
    served("chunk_size_leading_zeros", CHUNKED + b"005\r\nhello\r\n0\r\n\r\n"),
    served("chunk_ext_small", CHUNKED + b"2;a=b\r\nhe\r\n3;c=\"d\"\r\nllo\r\n0;e\r\n\r\n"),
    refused("chunk_ext_two_with_value", CHUNKED + b"5;a=b;c=d\r\nhello\r\n0\r\n\r\n",
            why="llhttp 8.1 refuses a second extension after one with a value"),
    served("trailers", CHUNKED + b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
           why="trailers are read and dropped, never forwarded"),
    refused("trailer_bare_lf", CHUNKED + b"5\r\nhello\r\n0\r\n\n"),
    refused("trailer_obs_fold", CHUNKED + b"5\r\nhello\r\n0\r\nX-T: 1\r\n 2\r\n\r\n"),
    refused("trailer_space_before_colon", CHUNKED + b"5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n"),
    # Request line, target and Host (issues 11 and 12).
    refused("request_line_100k", b"GET /" + b"a" * 100 * 1024 + b" HTTP/1.1\r\n" + H + b"\r\n",
            414),
    refused("header_block_too_large",
            b"GET /v HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 8000 + b"\r\n\r\n", 431),
    refused("request_line_double_space", b"GET  /v HTTP/1.1\r\n" + H + b"\r\n"),
    refused("target_fragment", b"GET /v#frag HTTP/1.1\r\n" + H + b"\r\n"),
    refused("target_absolute_form", b"GET http://t/v HTTP/1.1\r\n" + H + b"\r\n"),
    refused("target_asterisk_get", b"GET * HTTP/1.1\r\n" + H + b"\r\n"),
    refused("host_with_space", b"GET /v HTTP/1.1\r\nHost: a b\r\n\r\n"),
    refused("host_empty", b"GET /v HTTP/1.1\r\nHost:\r\n\r\n"),
    refused("host_bad_port", b"GET /v HTTP/1.1\r\nHost: t:80x\r\n\r\n"),
    refused("host_userinfo", b"GET /v HTTP/1.1\r\nHost: u@t\r\n\r\n"),
    refused("host_duplicate", b"GET /v HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n"),
    served("host_ipv6_port", b"GET /v HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", body=b"",
           method="GET"),
]


class RecordingBackend:
    """Reads HTTP/1.1 requests (Content-Length or chunked, as the gateway sends them) and records
    each complete one; answers 200 with keep-alive. A connection that ends inside a request counts
    as `partial`. respond(sock, request) may answer differently."""

    def __init__(self, respond=None):
        self.respond = respond
        self.requests = []  # (method, target, headers {lower name: value}, body)
        self.partial = 0
        self.garbage = []  # request lines that are not "METHOD /target HTTP/1.1"
        self.connections = 0
        self.lock = threading.Lock()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.address = addr(self.listener.getsockname()[1])
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def since(self, n):
        with self.lock:
            return list(self.requests[n:])

    def _conn(self, s):
        buf = bytearray()

        def need(n):
            while len(buf) < n:
                chunk = s.recv(65536)
                if not chunk:
                    raise EOFError
                buf.extend(chunk)

        def line():
            while True:
                i = buf.find(b"\r\n")
                if i >= 0:
                    out = bytes(buf[:i])
                    del buf[:i + 2]
                    return out
                need(len(buf) + 1)

        s.settimeout(30)
        try:
            while True:
                try:
                    start = line()
                except EOFError:
                    return  # closed between requests
                if not re.fullmatch(rb"[A-Z]+ /\S* HTTP/1\.1", start):
                    with self.lock:
                        self.garbage.append(start[:100])
                    return
                try:
                    method, target, _ = start.decode("latin-1").split(" ")
                    headers = {}
                    while True:
                        h = line()
                        if not h:
                            break
                        k, _, v = h.decode("latin-1").partition(":")
                        headers[k.strip().lower()] = v.strip()
                    body = b""
                    if headers.get("transfer-encoding", "").lower() == "chunked":
                        while True:
                            size = int(line().split(b";")[0], 16)
                            if size == 0:
                                while line():
                                    pass
                                break
                            need(size + 2)
                            body += bytes(buf[:size])
                            assert buf[size:size + 2] == b"\r\n"
                            del buf[:size + 2]
                    elif "content-length" in headers:
                        n = int(headers["content-length"])
                        need(n)
                        body = bytes(buf[:n])
                        del buf[:n]
                except EOFError:
                    with self.lock:
                        self.partial += 1
                    return
                req = (method, target, headers, body)
                with self.lock:
                    self.requests.append(req)
                if self.respond:
                    if self.respond(s, req) is False:
                        return
                else:
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.stop = True
        self.listener.close()


def read_answers(test, conn, n):
    statuses = []
    for _ in range(n):
        try:
            statuses.append(conn.read_response().status)
        except (ConnClosed, socket.timeout) as e:
            test.fail(f"connection {e!r} after answers {statuses}")
    return statuses


class BackendCase(SluiceTestCase):
    limits = LIMITS

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.backend = RecordingBackend()
        cls.addClassCleanup(cls.backend.close)
        cls.gw = cls.class_gateway({
            "workers": 1,
            "limits": cls.limits,
            "services": [service("rec", cls.backend.address)],
            "routes": [route("all", "rec", path_prefix="/")],
        })

    def sentinel(self):
        """Sends a request on a new connection and waits until the backend has it: everything the
        gateway forwarded for the connections before it has arrived by then (one worker, and the
        backend records in arrival order per connection)."""
        before = self.backend.count()
        with RawConn(self.gw.address) as c:
            c.send(b"GET /sentinel HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
        wait_until(lambda: any(r[1] == "/sentinel" for r in self.backend.since(before)), 10,
                   message="the sentinel request at the backend")

    def check_vector(self, v):
        self.sentinel()
        before = self.backend.count()
        garbage_before = len(self.backend.garbage)
        with RawConn(self.gw.address, timeout=10) as c:
            try:
                c.send(v.raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway may stop reading early; the answer is what counts
            self.assertEqual(read_answers(self, c, len(v.answers)), v.answers, v.raw[:200])
            expected = list(v.backend)
            if v.closed:
                self.assertClosed(c)
            else:
                # The same connection still frames requests correctly.
                c.send(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
                self.assertEqual(read_answers(self, c, 1), [200])
                expected.append(("GET", "/after", b""))
        wait_until(lambda: self.backend.count() - before >= len(expected), 10,
                   message=f"{len(expected)} requests at the backend")
        self.sentinel()
        seen = [r for r in self.backend.since(before) if r[1] != "/sentinel"]
        self.assertEqual(self.backend.garbage[garbage_before:], [],
                         "bytes the client never sent reached the backend")
        self.assertEqual([(m, t, b) for m, t, _, b in seen], expected,
                         f"backend saw other requests than the client meant for {v.name}")
        return seen


class SmugglingTest(BackendCase):
    """The vectors with small request bodies read whole before an upstream is taken (the
    default, limits.request_buffer_bytes)."""


class SmugglingStreamingTest(BackendCase):
    """The same vectors with request bodies streamed (request_buffer_bytes: 0): the head goes
    upstream before the body is read, on a pooled connection."""

    limits = STREAMING


def _make_test(v):
    def test(self):
        seen = self.check_vector(v)
        if v.name == "cl_leading_zero":
            self.assertEqual(seen[0][2].get("content-length"), "5")
        if v.name == "trailers":
            self.assertNotIn("x-trailer", seen[0][2])
    test.__doc__ = f"{v.name}: {v.answers}, {'closed' if v.closed else 'kept open'}"
    return test


for _v in VECTORS:
    setattr(SmugglingTest, f"test_{_v.name}", _make_test(_v))
    setattr(SmugglingStreamingTest, f"test_{_v.name}", _make_test(_v))


class SegmentationTest(BackendCase):
    """The same bytes in different reads get the same answer (issue 12)."""

    def send_in_pieces(self, raw, pieces):
        """Sends raw cut at `pieces` offsets, each piece on its own send; returns the answer."""
        with RawConn(self.gw.address, timeout=10) as c:
            last = 0
            try:
                for cut in list(pieces) + [len(raw)]:
                    c.send(raw[last:cut])
                    last = cut
            except (BrokenPipeError, ConnectionResetError):
                pass
            r = c.read_response()
            self.assertClosed(c)
            return r.status

    def test_long_request_line_always_414(self):
        raw = b"GET /" + b"a" * 100 * 1024 + b" HTTP/1.1\r\n" + H + b"\r\n"
        for name, cuts in [("whole", []), ("after 10 bytes", [10]), ("at the head limit", [4096]),
                           ("in 1000-byte pieces", range(1000, len(raw), 1000)),
                           ("at the URI limit", [1024, 1030])]:
            with self.subTest(name):
                self.assertEqual(self.send_in_pieces(raw, cuts), 414)

    def test_large_header_block_always_431(self):
        raw = b"GET /v HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 100 * 1024 + b"\r\n\r\n"
        for name, cuts in [("whole", []), ("after the request line", [17]), ("at the limit", [4096]),
                           ("in 1000-byte pieces", range(1000, len(raw), 1000))]:
            with self.subTest(name):
                self.assertEqual(self.send_in_pieces(raw, cuts), 431)

    def test_chunk_terminator_one_byte_at_a_time(self):
        before = self.backend.count()
        raw = CHUNKED + b"5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
        self.assertEqual(self.send_in_pieces(raw, range(1, len(raw))), 400)
        self.sentinel()
        self.assertEqual([r[1] for r in self.backend.since(before)], ["/sentinel"])


class StreamedBodyTest(SluiceTestCase):
    """A bad chunk after part of the body went upstream: the upstream connection is dropped (the
    backend sees it end inside the request), never reused, and the client gets 400."""

    def test_bad_terminator_after_streaming_began(self):
        backend = RecordingBackend()
        self.addCleanup(backend.close)
        gw = self.gateway({"workers": 1, "limits": STREAMING,
                           "services": [service("rec", backend.address)],
                           "routes": [route("all", "rec", path_prefix="/")]})
        with RawConn(gw.address, timeout=10) as c:
            c.send(CHUNKED + b"5\r\nhello\r\n")
            wait_until(lambda: backend.connections >= 1, 10, message="the backend connection")
            c.send(b"3\r\nabcXY0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n")
            r = c.read_response()
            self.assertGatewayError(r, 400)
            self.assertClosed(c)
        wait_until(lambda: backend.partial >= 1, 10,
                   message="the backend to see its connection end inside the request")
        self.assertEqual(backend.count(), 0)
        with RawConn(gw.address) as c:
            self.assertEqual(c.request("GET", "/next", host="t").status, 200)
        self.assertEqual([r[1] for r in backend.since(0)], ["/next"])
        self.assertEqual(backend.connections, 2, "the dropped upstream connection was reused")


class UpstreamFramingTest(SluiceTestCase):
    """An upstream with broken chunk framing: 502 while nothing was sent to the client, a cut
    connection after; its connection is never reused."""

    def gateway_for(self, respond):
        backend = RecordingBackend(respond)
        self.addCleanup(backend.close)
        gw = self.gateway({"workers": 1, "limits": LIMITS,
                           "services": [service("rec", backend.address,
                                                retry={"attempts": 0})],
                           "routes": [route("all", "rec", path_prefix="/")]})
        return backend, gw

    def test_bad_chunk_terminator_before_anything_sent_is_502(self):
        def respond(s, req):
            if req[1] == "/bad":
                s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"5\r\nhelloXX0\r\n\r\n")
            else:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        backend, gw = self.gateway_for(respond)
        with RawConn(gw.address) as c:
            r = c.request("GET", "/bad", host="t")
            self.assertGatewayError(r, 502)
            # The client's own framing is intact: the connection may serve another request.
            r2 = c.request("GET", "/good", host="t")
            self.assertEqual((r2.status, r2.body), (200, b"ok"))
        self.assertEqual(backend.connections, 2, "the upstream connection was reused")

    def test_bad_chunk_terminator_after_head_sent_cuts_the_connection(self):
        gate = threading.Event()

        def respond(s, req):
            s.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            gate.wait(10)
            s.sendall(b"5\r\nworldXX0\r\n\r\n")
        backend, gw = self.gateway_for(respond)
        with RawConn(gw.address) as c:
            c.send(b"GET /bad HTTP/1.1\r\nHost: t\r\n\r\n")
            head = c.read_head()
            self.assertEqual(head.status, 200)
            gate.set()
            with self.assertRaises((ConnClosed, AssertionError, ValueError)):
                # The body never ends properly: the gateway cuts the connection.
                while True:
                    size = int(c._read_line().split(b";")[0], 16)
                    if size == 0:
                        break
                    c._read_exact(size + 2)
            self.assertTrue(c.eof, "the connection was not cut")


def write_corpus():
    os.makedirs(CORPUS_DIR, exist_ok=True)
    for v in VECTORS:
        with open(os.path.join(CORPUS_DIR, f"smuggle_{v.name}"), "wb") as f:
            f.write(b"\x00" + v.raw)  # first byte 0: request, fed whole (http_codec_fuzz.cc)


class CorpusTest(unittest.TestCase):
    def test_every_vector_is_in_the_fuzz_corpus(self):
        for v in VECTORS:
            path = os.path.join(CORPUS_DIR, f"smuggle_{v.name}")
            with self.subTest(v.name):
                self.assertTrue(os.path.exists(path), f"{path} missing (--write-corpus)")
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), b"\x00" + v.raw)


if __name__ == "__main__":
    if "--write-corpus" in sys.argv:
        write_corpus()
        sys.exit(0)
    unittest.main()
