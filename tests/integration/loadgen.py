"""Closed-loop keep-alive load: N clients, each on its own connection, each sending GET after GET
and waiting for every response. Python 3 standard library only (asyncio), shared by
test_instance_loss.py and bench/instance_loss.py.

A request fails when it gets a status other than 200, when the connection breaks before its
response is complete, or when no response comes within `request_timeout`. A client whose
connection broke (or that was told `Connection: close`) opens a new one.
"""

import asyncio


class LoadResult:
    def __init__(self):
        self.requests = 0
        self.statuses = {}
        self.failures = []  # (seconds since start, what)
        self.failed = 0
        self.cities = {}    # city -> responses served there (from the sample service's JSON)
        self.cities_after = {}  # the same, for requests sent after `mark` (see run_load)
        self.latencies = []
        self.duration = 0.0

    def ok(self):
        return self.requests - self.failed

    def fail(self, at, what):
        self.failed += 1
        if len(self.failures) < 20:
            self.failures.append((round(at, 3), what))

    def summary(self):
        lat = sorted(self.latencies)
        def pct(p):
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0
        return {"requests": self.requests, "failed": self.failed, "statuses": self.statuses,
                "rps": round(self.requests / self.duration, 1) if self.duration else 0,
                "p50_ms": round(pct(0.50), 2), "p99_ms": round(pct(0.99), 2),
                "max_ms": round(lat[-1] * 1000, 2) if lat else 0.0,
                "cities": self.cities, "cities_after_event": self.cities_after,
                "first_failures": self.failures}


def _city(body):
    i = body.find(b'"city":"')
    if i < 0:
        return None
    j = body.find(b'"', i + 8)
    return body[i + 8:j].decode("latin-1", "replace")


async def _client(host, port, path, deadline, result, t0, mark, request_timeout):
    reader = writer = None
    n = 0
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                        request_timeout)
            except (OSError, asyncio.TimeoutError) as e:
                result.requests += 1
                result.fail(loop.time() - t0, f"connect: {e!r}")
                await asyncio.sleep(0.01)
                continue
        n += 1
        sent = loop.time()
        close = False
        try:
            writer.write(f"GET {path}{n} HTTP/1.1\r\nHost: loadgen\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), request_timeout)
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and b"close" in value.lower():
                    close = True
            body = await asyncio.wait_for(reader.readexactly(length), request_timeout)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError) as e:
            result.requests += 1
            result.fail(sent - t0, f"transport: {type(e).__name__} {e}")
            writer.close()
            writer = None
            continue
        now = loop.time()
        result.requests += 1
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.latencies.append(now - sent)
        if status != 200:
            result.fail(sent - t0, f"{status} {body[:160]!r}")
        else:
            city = _city(body)
            result.cities[city] = result.cities.get(city, 0) + 1
            if mark is not None and sent - t0 >= mark:
                result.cities_after[city] = result.cities_after.get(city, 0) + 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _run(address, clients, duration, events, path, request_timeout, mark):
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    result = LoadResult()
    t0 = loop.time()
    for at, fn in events:
        loop.call_later(at, fn)
    tasks = [asyncio.create_task(_client(host, int(port), path, t0 + duration, result, t0, mark,
                                         request_timeout))
             for _ in range(clients)]
    await asyncio.gather(*tasks)
    result.duration = loop.time() - t0
    return result


def run_load(address, clients, duration, events=(), path="/load/", request_timeout=10.0,
             mark=None):
    """Runs `clients` closed-loop keep-alive clients against `address` for `duration` seconds.
    events: [(seconds after start, callable)] run on the load's thread (keep them short, e.g.
    a SIGKILL). mark: seconds after start from which cities_after counts. Returns LoadResult."""
    return asyncio.run(_run(address, clients, duration, list(events), path, request_timeout,
                            mark))

