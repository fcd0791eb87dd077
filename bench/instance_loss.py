#!/usr/bin/env python3
"""Instance loss under load (issue 11): what closed-loop keep-alive clients see when instances of
a service are SIGKILLed, with the gateway's DEFAULT retry settings.

Per run, on ephemeral loopback ports: sample services pay-a1, pay-a2 (city a) and pay-b1 (city b);
a 2-worker gateway in city a with one `kind: global` service over the three, `locality: {prefer:
same_city}`, a health check at 1s needing 2 failures, and no `retry` section. The load runs for
--warmup seconds, then the victims get SIGKILL, then it runs --after seconds more.

Scenarios: `one` kills pay-a1 (pay-a2 stays in the gateway's city), `city` kills pay-a1 and
pay-a2 (the whole local city: traffic moves to city b). Each scenario runs with each of --clients.

A failed request is a status other than 200, a connection broken before the response, or no
response within 10 s. Also shown: the gateway's retries and the down marks of the victims
(sluice_endpoint_down_total: an endpoint taken out of rotation by a refused connection).

Usage: bench/instance_loss.py [--sluice build/release/sluice] [--clients 8,64,256]
       [--scenarios one,city] [--warmup 2] [--after 4] [--json]
Exit status: 0 when every run had 0 failed requests, 1 otherwise, 2 for bad options.
Python 3 standard library only (uses tests/integration/harness.py and loadgen.py).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sluice", default=os.path.join(os.path.dirname(HERE), "build", "release",
                                                     "sluice"))
    ap.add_argument("--clients", default="8,64,256")
    ap.add_argument("--scenarios", default="one,city")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--after", type=float, default=4.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["SLUICE_BIN"] = os.path.abspath(args.sluice)
    import harness  # noqa: E402 - after SLUICE_BIN is set
    from loadgen import run_load  # noqa: E402

    try:
        clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        ap.error("--clients: a comma-separated list of integers")
    victims_of = {"one": ["a1"], "city": ["a1", "a2"]}
    scenarios = args.scenarios.split(",")
    if any(s not in victims_of for s in scenarios):
        ap.error("--scenarios: one, city")

    rows = []
    for scenario in scenarios:
        for n in clients:
            workdir = tempfile.mkdtemp(prefix="sluice-instance-loss-")
            procs = []
            try:
                inst = {}
                for name, city in (("a1", "a"), ("a2", "a"), ("b1", "b")):
                    s = harness.Sample(workdir, "pay", city=city, zone=f"{city}1",
                                       extra_args=("--instance", name))
                    procs.append(s)
                    s.start()
                    s.wait_ready()
                    inst[name] = s
                gw = harness.Gateway(workdir, {
                    "node": {"id": "gw-a", "city": "a", "zone": "a1"},
                    "workers": 2,
                    "access_log": {"path": "off"},
                    "services": [{
                        "name": "pay", "kind": "global",
                        "endpoints": [harness.endpoint(s.address, city=k[0], zone=f"{k[0]}1")
                                      for k, s in inst.items()],
                        "locality": {"prefer": "same_city"},
                        "health_check": {"interval": "1s", "unhealthy_threshold": 2},
                    }],
                    "routes": [harness.route("pay", "pay", path_prefix="/")],
                })
                procs.append(gw)
                gw.start()
                gw.wait_ready()
                victims = victims_of[scenario]
                r = run_load(gw.address, n, args.warmup + args.after,
                             events=[(args.warmup,
                                      lambda: [inst[v].popen.kill() for v in victims])],
                             mark=args.warmup + 0.3)
                m = gw.metrics()
                row = {"scenario": scenario, "clients": n}
                row.update(r.summary())
                row["retries"] = harness.metric_sum(m, "sluice_upstream_retries_total")
                row["down_marks"] = sum(
                    harness.metric_sum(m, "sluice_endpoint_down_total",
                                       endpoint=inst[v].address) for v in victims)
                rows.append(row)
                if not args.json:
                    print(f"{scenario:5} {n:4} clients: {row['requests']:7} requests "
                          f"{row['failed']:4} failed  {row['rps']:8.0f} req/s  "
                          f"p99 {row['p99_ms']:7.2f} ms  max {row['max_ms']:8.2f} ms  "
                          f"retries {row['retries']:.0f}  down marks {row['down_marks']:.0f}  "
                          f"after the kill: {row['cities_after_event']}", flush=True)
                    for f in row["first_failures"][:5]:
                        print(f"      failed at {f[0]}s: {f[1]}")
            finally:
                for p in reversed(procs):
                    p.kill()
                shutil.rmtree(workdir, True)
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
