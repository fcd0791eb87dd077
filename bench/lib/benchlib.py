#!/usr/bin/env python3
"""Helpers for bench/proxy_bench.sh (stdlib only).

  benchlib.py ports N                     print N free loopback TCP ports
  benchlib.py record RESULTS k=v...       parse one wrk run (wrk_out=FILE) and append it as JSON
  benchlib.py record-idle RESULTS k=v...  append one idle-connection memory run
  benchlib.py record-skip RESULTS k=v...  append a proxy that was skipped or failed in a scenario
  benchlib.py report RESULTS META MD      print the tables and write them as markdown to MD

Rounds of the same (scenario, proxy) are summarised by their median; the spread column shows
(max - min) / median of req/s so that differences inside the noise are visible as such.
"""
import json
import re
import socket
import statistics
import sys

PROXY_ORDER = ["direct", "nginx", "haproxy", "sluice"]
PEERS = ["nginx", "haproxy"]
# Targets from issue 2 (performance part). Efficiency is compared per busy proxy core.
TARGET_PER_CORE = 1.2
TARGET_IDLE_KIB = 8.0
NOISE = 0.05  # differences under ~5% are noise on this kind of machine (ANCHORS.md)
# A run in which other processes took more than this share of the proxy CPU is marked untrustworthy.
OTHER_PCT_LIMIT = 10.0

MODE_TEXT = {
    "ka": "keep-alive, as fast as possible",
    "close": "`Connection: close` on every request (one TCP connection per request)",
    "paced": "paced: each connection pauses after each response, same offered load for all",
    "idle": "idle keep-alive connections held open, proxy RSS growth",
    "pool": "keep-alive, as fast as possible, default upstream pools (sluice: follows demand)",
}


# ---------------------------------------------------------------------------------------------
# ports

def cmd_ports(argv):
    n = int(argv[0]) if argv else 1
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()
    return 0


# ---------------------------------------------------------------------------------------------
# recording

def kv(argv, prog="benchlib"):
    out = {}
    for a in argv:
        k, sep, v = a.partition("=")
        if not sep:
            raise SystemExit(f"{prog}: expected key=value, got {a!r}")
        out[k] = v
    return out


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return int(f) if f.is_integer() and "." not in str(v) else f


UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_wrk(text):
    """Figures of one wrk run. Prefers the SLUICE_BENCH line of stats.lua, falls back to the text."""
    m = re.search(r"^SLUICE_BENCH (\{.*\})$", text, re.M)
    if m:
        r = json.loads(m.group(1))
        r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
        r["source"] = "lua"
    else:
        r = {"source": "text"}
        m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
        if not m:
            raise ValueError("no wrk summary in output")
        r["requests"] = int(m.group(1))
        r["duration_us"] = float(m.group(2)) * UNIT_US[m.group(3)]
        for pct in ("50", "90", "99"):
            mm = re.search(rf"^\s*{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
            if mm:
                r[f"p{pct}_us"] = float(mm.group(1)) * UNIT_US[mm.group(2)]
        errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
        if errs:
            r["err_connect"], r["err_read"], r["err_write"], r["err_timeout"] = map(int, errs.groups())
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        r["err_status"] = int(non2xx.group(1)) if non2xx else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r["rps_text"] = float(m.group(1))
        if r["source"] == "text":
            r["rps"] = r["rps_text"]
    return r


def append(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")


def cmd_record(argv):
    results, args = argv[0], kv(argv[1:])
    rec = {k: num(v) for k, v in args.items() if k != "wrk_out"}
    rec["kind"] = "load"
    with open(args["wrk_out"]) as f:
        text = f.read()
    try:
        rec.update(parse_wrk(text))
    except (ValueError, KeyError) as e:
        rec["kind"] = "skip"
        rec["reason"] = f"wrk output unreadable ({e}); see {args['wrk_out']}"
        append(results, rec)
        print(f"  {rec['proxy']}: {rec['reason']}", file=sys.stderr)
        return 0
    tck = float(rec.get("clk_tck", 100))
    cpu_s = float(rec.get("cpu_ticks", 0)) / tck
    wall = float(rec.get("wall_s", 0))
    rec["cpu_s"] = cpu_s
    rec["busy_pct"] = 100.0 * cpu_s / wall if wall > 0 else None
    # req/s per busy core = requests / proxy CPU seconds (= req/s / busy fraction).
    rec["per_core"] = rec["requests"] / cpu_s if cpu_s > 0 else None
    rec["cpu_us_per_req"] = 1e6 * cpu_s / rec["requests"] if rec["requests"] and cpu_s > 0 else None
    # Whole-CPU busy shares from /proc/stat: the load CPU (is the load side saturated?) and the
    # proxy CPU beyond the proxy itself (other processes stealing time from it = noise).
    if rec.get("load_total_d"):
        rec["load_cpu_pct"] = 100.0 * float(rec["load_busy_d"]) / float(rec["load_total_d"])
    if rec.get("pcpu_total_d") and rec["busy_pct"] is not None:
        rec["proxy_cpu_other_pct"] = max(
            0.0, 100.0 * float(rec["pcpu_busy_d"]) / float(rec["pcpu_total_d"]) - rec["busy_pct"])
    rec["errors"] = sum(int(rec.get(k, 0)) for k in
                        ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    append(results, rec)
    print(f"  {rec['proxy']:<8} {rec['rps']:>10,.0f} req/s  p50 {rec.get('p50_us', 0) / 1000:.3f} ms"
          f"  p99 {rec.get('p99_us', 0) / 1000:.3f} ms  busy {rec['busy_pct'] or 0:.1f}%"
          f"  load CPU {rec.get('load_cpu_pct', 0):.0f}%  errors {rec['errors']}", flush=True)
    return 0


def cmd_record_idle(argv):
    results, args = argv[0], kv(argv[1:])
    rec = {k: num(v) for k, v in args.items()}
    rec["kind"] = "idle"
    held = int(rec.get("held", 0))
    grow = float(rec["rss_after_kib"]) - float(rec["rss_before_kib"])
    rec["kib_per_conn"] = grow / held if held else None
    append(results, rec)
    print(f"  {rec['proxy']:<8} held {held}  RSS {rec['rss_before_kib']} -> {rec['rss_after_kib']} KiB"
          f"  = {rec['kib_per_conn'] or 0:.2f} KiB/conn  closed by proxy {rec.get('closed_by_peer', '?')}",
          flush=True)
    return 0


def cmd_record_skip(argv):
    results, args = argv[0], kv(argv[1:])
    rec = {k: num(v) for k, v in args.items()}
    rec["kind"] = "skip"
    append(results, rec)
    return 0


# ---------------------------------------------------------------------------------------------
# report

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_int(v):
    return "-" if v is None else f"{v:,.0f}"


def fmt_f(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_ms(us):
    return "-" if us is None else f"{us / 1000.0:.3f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def ratio(a, b):
    return a / b if a is not None and b else None


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                meta[k] = v
    return meta


def summarise_load(recs):
    # Rounds in which other processes took the proxy's CPU are left out when clean ones exist.
    clean = [r for r in recs if r.get("proxy") == "direct"
             or (r.get("proxy_cpu_other_pct") or 0) <= OTHER_PCT_LIMIT]
    s = {"rounds": f"{len(clean) if clean else len(recs)}/{len(recs)}", "noisy": not clean}
    recs = clean or recs
    for k in ("rps", "p50_us", "p99_us", "busy_pct", "per_core", "cpu_us_per_req",
              "load_cpu_pct", "proxy_cpu_other_pct"):
        s[k] = median([r.get(k) for r in recs])
    s["upstream_opened"] = median([r.get("upstream_opened") for r in recs])
    s["errors"] = sum(int(r.get("errors", 0)) for r in recs)
    rps = [r["rps"] for r in recs]
    s["spread"] = (max(rps) - min(rps)) / s["rps"] if len(rps) > 1 and s["rps"] else None
    s["pace_ms"] = recs[0].get("pace_ms")
    return s


def summarise_idle(recs):
    s = {"rounds": len(recs)}
    for k in ("kib_per_conn", "rss_before_kib", "rss_after_kib", "held", "closed_by_peer"):
        s[k] = median([r.get(k) for r in recs])
    return s


def best_peer(rows, key, higher_is_better=True):
    vals = [(rows[p][key], p) for p in PEERS if p in rows and rows[p].get(key) is not None]
    if not vals:
        return None, None
    v, p = (max if higher_is_better else min)(vals)
    return v, p


class Table:
    def __init__(self, headers, left=1):
        self.headers = headers
        self.left = left  # this many leading columns are text, aligned left
        self.rows = []

    def add(self, row):
        self.rows.append([str(c) for c in row])

    def text(self):
        full = [r for r in self.rows if len(r) == len(self.headers)]
        widths = [max([len(h)] + [len(r[i]) for r in full]) for i, h in enumerate(self.headers)]
        lines = ["  ".join(h.ljust(w) if i < self.left else h.rjust(w)
                           for i, (h, w) in enumerate(zip(self.headers, widths)))]
        for r in self.rows:
            if len(r) == 2:  # proxy + a note spanning the row
                lines.append(f"{r[0].ljust(widths[0])}  {r[1]}")
                continue
            lines.append("  ".join(c.ljust(w) if i < self.left else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        return "\n".join(lines)

    def markdown(self):
        out = ["| " + " | ".join(self.headers) + " |",
               "|" + "|".join(["---"] * self.left + ["---:"] * (len(self.headers) - self.left)) + "|"]
        for r in self.rows:
            if len(r) == 2:
                r = [r[0], r[1]] + [""] * (len(self.headers) - 2)
            out.append("| " + " | ".join(r) + " |")
        return "\n".join(out)


def scenario_title(name, meta):
    parts = name.split("-")
    mode = parts[0]
    if mode == "idle":
        return f"{name}: {MODE_TEXT['idle']} ({meta.get('idle_conns', '?')} connections)"
    body = {"128": "128 B", "4k": "4 KiB"}.get(parts[1], parts[1])
    conns = parts[2].lstrip("c")
    return f"{name}: {MODE_TEXT[mode]}; {body} body, {conns} connections"


def cmd_report(argv):
    results_path, meta_path, md_path = argv
    meta = read_meta(meta_path)
    recs = []
    with open(results_path) as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    scenarios = meta.get("scenarios", "").split()
    for r in recs:  # without a meta file: every scenario in the order first seen
        if r.get("scenario") not in scenarios and not meta.get("scenarios"):
            scenarios.append(r["scenario"])
    repeat = int(meta.get("repeat", "1"))

    text_out, md_out, targets, noisy_runs = [], [], [], []
    md_out.append("# Sluice proxy benchmark results\n")
    md_out.append(f"- date: {meta.get('date', '?')}")
    md_out.append(f"- machine: {meta.get('machine', '?')}")
    md_out.append(f"- kernel: {meta.get('kernel', '?')}")
    md_out.append(f"- tools: {meta.get('versions', '?')}")
    md_out.append(f"- sluice: {meta.get('sluice', '?')}")
    md_out.append(f"- backend: {meta.get('backend', '?')}")
    md_out.append(f"- pinning: proxy on CPU {meta.get('proxy_cpu')}, backend + wrk on CPU "
                  f"{meta.get('load_cpu')}; wrk -t1, {meta.get('duration')}s per run after "
                  f"{meta.get('warmup')}s warm-up, {repeat} round(s), proxies in alternating order")
    md_out.append(f"- command: `{meta.get('command', '?')}`")
    md_out.append("")
    md_out.append("Columns: busy CPU % = proxy process CPU time / wall time (100 = one core); "
                  "req/s per busy core = requests / proxy CPU seconds; ratios are to the better of "
                  "nginx and HAProxy for that column; load CPU % = total busy of the backend+wrk CPU; "
                  "other % = busy time on the proxy CPU not spent in the proxy (noise from other "
                  "processes). Figures are medians over rounds.\n")

    for sc in scenarios:
        title = scenario_title(sc, meta)
        sc_recs = [r for r in recs if r.get("scenario") == sc]
        by_proxy = {}
        for r in sc_recs:
            by_proxy.setdefault(r["proxy"], []).append(r)
        proxies = [p for p in PROXY_ORDER if p in by_proxy] + \
                  sorted(p for p in by_proxy if p not in PROXY_ORDER)
        if sc == "idle":
            t = Table(["proxy", "held", "RSS before KiB", "RSS after KiB", "KiB per conn",
                       "closed by proxy", "vs best peer"])
            rows = {}
            notes = {}
            for p in proxies:
                ok = [r for r in by_proxy[p] if r["kind"] == "idle"]
                if ok:
                    rows[p] = summarise_idle(ok)
                else:
                    notes[p] = by_proxy[p][-1].get("reason", "skipped")
            best, _ = best_peer(rows, "kib_per_conn", higher_is_better=False)
            for p in proxies:
                if p in notes:
                    t.add([p, notes[p]])
                    continue
                s = rows[p]
                t.add([p, fmt_int(s["held"]), fmt_int(s["rss_before_kib"]), fmt_int(s["rss_after_kib"]),
                       fmt_f(s["kib_per_conn"], 2), fmt_int(s["closed_by_peer"]),
                       fmt_ratio(ratio(s["kib_per_conn"], best))])
            if "sluice" in rows:
                v = rows["sluice"]["kib_per_conn"]
                targets.append(["idle", "KiB per idle keep-alive connection",
                                f"<= {TARGET_IDLE_KIB:g}", fmt_f(v, 2),
                                fmt_f(best, 2) if best is not None else "-",
                                verdict(v is not None and v <= TARGET_IDLE_KIB)])
            else:
                targets.append(["idle", "KiB per idle keep-alive connection", f"<= {TARGET_IDLE_KIB:g}",
                                "not measured", fmt_f(best, 2) if best is not None else "-", "-"])
        else:
            headers = ["proxy", "req/s", "p50 ms", "p99 ms", "busy CPU %", "req/s per busy core",
                       "CPU us/req", "req/s vs peer", "per-core vs peer", "p99 vs peer",
                       "load CPU %", "other %", "errors"]
            if repeat > 1:
                headers[2:2] = ["rounds", "spread"]
            pool_mode = sc.split("-")[0] == "pool"
            if pool_mode:
                headers.append("upstream conns opened")
            t = Table(headers)
            rows, notes = {}, {}
            for p in proxies:
                ok = [r for r in by_proxy[p] if r["kind"] == "load"]
                if ok:
                    rows[p] = summarise_load(ok)
                else:
                    notes[p] = by_proxy[p][-1].get("reason", "skipped")
            best_rps, _ = best_peer(rows, "rps")
            best_core, _ = best_peer(rows, "per_core")
            best_p99, _ = best_peer(rows, "p99_us", higher_is_better=False)
            for p in proxies:
                if p in notes:
                    t.add([p, notes[p]])
                    continue
                s = rows[p]
                is_proxy = p != "direct"
                if s["noisy"]:
                    noisy_runs.append(f"{sc}/{p}")
                row = [p + (" (noisy)" if s["noisy"] else ""), fmt_int(s["rps"]), fmt_ms(s["p50_us"]), fmt_ms(s["p99_us"]),
                       fmt_f(s["busy_pct"]) if is_proxy else "-",
                       fmt_int(s["per_core"]) if is_proxy else "-",
                       fmt_f(s["cpu_us_per_req"], 2) if is_proxy else "-",
                       fmt_ratio(ratio(s["rps"], best_rps)),
                       fmt_ratio(ratio(s["per_core"], best_core)) if is_proxy else "-",
                       fmt_ratio(ratio(s["p99_us"], best_p99)),
                       fmt_f(s["load_cpu_pct"]), fmt_f(s["proxy_cpu_other_pct"]) if is_proxy else "-",
                       str(s["errors"])]
                if repeat > 1:
                    row[2:2] = [s["rounds"], "-" if s["spread"] is None else f"±{100 * s['spread'] / 2:.1f}%"]
                if pool_mode:
                    row.append(fmt_int(s["upstream_opened"]) if s["upstream_opened"] is not None else "-")
                t.add(row)
            mode = sc.split("-")[0]
            sl = rows.get("sluice")
            checks = []
            if mode in ("ka", "pool"):
                checks = [("req/s", "rps", best_rps, ">= better peer", lambda v, b: v >= b),
                          ("req/s per busy core", "per_core", best_core,
                           f">= {TARGET_PER_CORE}x better peer", lambda v, b: v >= TARGET_PER_CORE * b),
                          ("p99", "p99_us", best_p99, "<= better peer", lambda v, b: v <= b)]
            elif mode == "paced":
                checks = [("req/s per busy core", "per_core", best_core,
                           f">= {TARGET_PER_CORE}x better peer", lambda v, b: v >= TARGET_PER_CORE * b),
                          ("p99", "p99_us", best_p99, "<= better peer", lambda v, b: v <= b)]
            elif mode == "close":
                checks = [("req/s", "rps", best_rps, ">= better peer", lambda v, b: v >= b)]
            for label, key, best, goal, ok in checks:
                show = fmt_ms if key == "p99_us" else fmt_int
                if sl is None or sl.get(key) is None or best is None:
                    targets.append([sc, label, goal, "not measured" if sl is None else "-",
                                    show(best) if best is not None else "-", "-"])
                else:
                    v = sl[key]
                    passed = ok(v, best)
                    goal_value = TARGET_PER_CORE * best if key == "per_core" else best
                    close_call = abs(v - goal_value) / goal_value < NOISE
                    targets.append([sc, label, goal, show(v), show(best),
                                    verdict(passed) + (" (within 5% noise)" if close_call else "")])
            if mode == "paced":
                pace = rows[next(iter(rows))]["pace_ms"] if rows else None
                title += f"; pause {pace} ms"
        text_out.append(f"== {title} ==\n{t.text()}\n")
        md_out.append(f"## {title}\n\n{t.markdown()}\n")

    if noisy_runs:
        warn = (f"{len(noisy_runs)} result(s) marked (noisy) lost more than {OTHER_PCT_LIMIT:g}% of the proxy CPU to "
                f"other processes in every round ({', '.join(noisy_runs[:6])}{f' and {len(noisy_runs) - 6} more' if len(noisy_runs) > 6 else ''}): their figures are not trustworthy; rerun on a quiet machine.")
        text_out.append("WARNING " + warn + "\n")
        md_out.append("**Warning** " + warn + "\n")
    tt = Table(["scenario", "target", "goal", "sluice", "better peer", "verdict"], left=3)
    for row in targets:
        tt.add(row)
    text_out.append("== issue 2 targets (sluice) ==\n" + tt.text() + "\n")
    md_out.append("## Issue 2 targets (sluice)\n\n" + tt.markdown() + "\n")

    print("\n".join(text_out))
    with open(md_path, "w") as f:
        f.write("\n".join(md_out))
    return 0


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmds = {"ports": cmd_ports, "record": cmd_record, "record-idle": cmd_record_idle,
            "record-skip": cmd_record_skip, "report": cmd_report}
    if argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
