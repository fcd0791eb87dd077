#!/usr/bin/env python3
"""Helpers for bench/ratelimit_accuracy.sh (stdlib only).

  ratelimit_acc.py counters RULE FILE...   sum a rule's counters over /metrics scrapes:
                                           prints "allowed rejected fallback"
  ratelimit_acc.py logcount T0_US SECONDS LOG...
                                           requests of the access logs that started in
                                           [T0, T0 + SECONDS): prints "allowed(200) rejected(429)"
  ratelimit_acc.py record RESULTS k=v...   one measured run as a JSON line (see cmd_record)
  ratelimit_acc.py report RESULTS META MD  print the table and write it as markdown to MD

Admitted/s = requests answered 200 that started in exactly SECONDS from the first scrape, by
the gateways' access logs (millisecond times), / SECONDS. A sliding window admits a window's
quota in a burst at the same phase of every window under overload, so an interval that is not a
whole number of windows would count part of a burst (the two scrapes are 40-60 ms more than
SECONDS apart: up to +1.5% at 10 s). The counters between the two scrapes over the time between
them are kept as a cross-check (admitted_metrics_per_s). Offered/s = (200 + 429) / SECONDS.
"""
import datetime
import json
import re
import sys

from benchlib import kv, read_meta  # same directory

# Targets from issue 3: admitted within this many % of the limit.
TARGET_PCT = {"node": 1.0, "cluster": 5.0}

LINE = re.compile(r'^(sluice_ratelimit_(?:requests|fallback)_total)\{([^}]*)\}\s+(\S+)\s*$')


def labels(text):
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', text))


def cmd_counters(argv):
    rule, files = argv[0], argv[1:]
    allowed = rejected = fallback = 0.0
    seen = False
    for path in files:
        with open(path) as f:
            for line in f:
                m = LINE.match(line)
                if not m:
                    continue
                lab = labels(m.group(2))
                if lab.get("rule") != rule:
                    continue
                v = float(m.group(3))
                seen = True
                if m.group(1) == "sluice_ratelimit_fallback_total":
                    fallback += v
                elif lab.get("result") == "allowed":
                    allowed += v
                elif lab.get("result") == "rejected":
                    rejected += v
    if not seen:
        print(f"ratelimit_acc: no counters of rule {rule!r} in {' '.join(files)}", file=sys.stderr)
        return 1
    print(f"{allowed:.0f} {rejected:.0f} {fallback:.0f}")
    return 0


def log_ms(text):
    """"2026-11-26T10:50:51.156Z" -> ms since the epoch."""
    t = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000 + 0.5)


def cmd_logcount(argv):
    t0_ms = int(argv[0]) // 1000
    t1_ms = t0_ms + int(float(argv[1]) * 1000)
    allowed = rejected = 0
    for path in argv[2:]:
        with open(path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    t = log_ms(rec["time"])
                except (ValueError, KeyError):
                    continue
                if t0_ms <= t < t1_ms:
                    if rec.get("status") == 200:
                        allowed += 1
                    elif rec.get("status") == 429:
                        rejected += 1
    print(f"{allowed} {rejected}")
    return 0


def cmd_record(argv):
    """k=v: scope algorithm limit gateways t0 t1 a0 a1 r0 r1 f0 f1 [wrk_out=FILE...]"""
    results, a = argv[0], kv(argv[1:], "ratelimit_acc")
    between_scrapes = float(a["t1"]) - float(a["t0"])
    elapsed = float(a["duration"])
    admitted = int(a["log_allowed"])
    rejected = int(a["log_rejected"])
    limit = float(a["limit"])
    rec = {
        "scope": a["scope"], "algorithm": a["algorithm"], "limit": limit,
        "gateways": int(a["gateways"]), "round": int(a.get("round", 1)),
        "elapsed_s": elapsed, "admitted": admitted, "rejected": rejected,
        "fallback": int(a["f1"]) - int(a["f0"]),
        "admitted_per_s": admitted / elapsed,
        "offered_per_s": (admitted + rejected) / elapsed,
        # Cross-check: the rule's counters between the two scrapes.
        "between_scrapes_s": between_scrapes,
        "admitted_metrics": int(a["a1"]) - int(a["a0"]),
        "admitted_metrics_per_s": (int(a["a1"]) - int(a["a0"])) / between_scrapes,
    }
    rec["error_pct"] = 100.0 * (rec["admitted_per_s"] - limit) / limit
    rec["target_pct"] = TARGET_PCT[rec["scope"]]
    rec["pass"] = abs(rec["error_pct"]) <= rec["target_pct"]
    errs = 0
    for path in [v for k, v in a.items() if k.startswith("wrk_out")]:
        with open(path) as f:
            text = f.read()
        m = re.search(r"^SLUICE_BENCH (\{.*\})$", text, re.M)
        if m:
            w = json.loads(m.group(1))
            errs += sum(int(w.get(k, 0)) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    rec["socket_errors"] = errs
    with open(results, "a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    print(f"  {rec['scope']:<7} {rec['algorithm']:<14} admitted {rec['admitted_per_s']:9.1f}/s"
          f"  error {rec['error_pct']:+6.2f}%  offered {rec['offered_per_s']:8.0f}/s"
          f"  ({admitted} in {elapsed:.3f} s; counters {rec['admitted_metrics_per_s']:.1f}/s over"
          f" {between_scrapes:.3f} s; fallback {rec['fallback']}, socket errors {errs})"
          f"  {'PASS' if rec['pass'] else 'FAIL'}", flush=True)
    return 0


def cmd_report(argv):
    results, meta_path, md_path = argv
    meta = read_meta(meta_path)
    recs = [json.loads(line) for line in open(results) if line.strip()]
    headers = ["scope", "algorithm", "gateways", "round", "limit/s", "offered/s", "admitted/s",
               "error", "target", "verdict", "admitted", "seconds", "fallback", "socket errors"]
    rows = []
    for r in recs:
        rows.append([r["scope"], r["algorithm"], str(r["gateways"]), str(r["round"]),
                     f"{r['limit']:,.0f}", f"{r['offered_per_s']:,.0f}",
                     f"{r['admitted_per_s']:,.1f}", f"{r['error_pct']:+.2f}%",
                     f"±{r['target_pct']:g}%", "PASS" if r["pass"] else "FAIL",
                     f"{r['admitted']:,}", f"{r['elapsed_s']:.3f}", str(r["fallback"]),
                     str(r["socket_errors"])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    left = 2
    def line(cells):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    print("== rate-limit accuracy ==")
    print(line(headers))
    for row in rows:
        print(line(row))
    md = ["# Sluice rate-limit accuracy\n"]
    for k in ("date", "machine", "kernel", "tools", "sluice", "setup", "command"):
        if k in meta:
            v = f"`{meta[k]}`" if k == "command" else meta[k]
            md.append(f"- {k}: {v}")
    md.append("")
    md.append("| " + " | ".join(headers) + " |")
    md.append("|" + "|".join(["---"] * left + ["---:"] * (len(headers) - left)) + "|")
    for row in rows:
        md.append("| " + " | ".join(row) + " |")
    md.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(md))
    return 1 if any(not r["pass"] for r in recs) else 0


def main(argv):
    cmds = {"counters": cmd_counters, "logcount": cmd_logcount, "record": cmd_record,
            "report": cmd_report}
    if not argv or argv[0] not in cmds:
        print(__doc__, file=sys.stderr)
        return 2
    return cmds[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
