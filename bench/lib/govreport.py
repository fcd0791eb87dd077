#!/usr/bin/env python3
"""Governance overhead table for bench/proxy_bench.sh (stdlib only).

  govreport.py RESULTS MD   print `sluice-gov` against plain `sluice` per scenario and append
                            the table as markdown to MD (written by benchlib.py report before)

`sluice-gov` is the same gateway configuration with five rate-limit rules, a circuit breaker and
outlier detection (bench/conf/sluice-gateway-gov.yaml.in). Target (issue 3): its req/s at least
90% of plain sluice's in the same run. The ratios are per round (both variants run next to each
other in every round), then the median over the rounds: less exposed to the drift between rounds
than a ratio of medians.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (OTHER_PCT_LIMIT, Table, fmt_f, fmt_int, fmt_ms, median,  # noqa: E402
                      summarise_idle, summarise_load)

TARGET = 0.90
BASE, GOV = "sluice", "sluice-gov"


def clean_run(r):
    return (r.get("proxy_cpu_other_pct") or 0) <= OTHER_PCT_LIMIT


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results_path, md_path = argv
    recs = [json.loads(line) for line in open(results_path) if line.strip()]
    scenarios = []
    for r in recs:
        if r.get("scenario") not in scenarios:
            scenarios.append(r["scenario"])
    t = Table(["scenario", "sluice req/s", "sluice-gov req/s", "req/s ratio", "per round",
               "per-core ratio", "CPU us/req", "gov CPU us/req", "p99 ms", "gov p99 ms",
               "target", "verdict"])
    idle_rows = []
    any_row = False
    for sc in scenarios:
        base = [r for r in recs if r.get("scenario") == sc and r.get("proxy") == BASE]
        gov = [r for r in recs if r.get("scenario") == sc and r.get("proxy") == GOV]
        if sc == "idle":
            b = [r for r in base if r["kind"] == "idle"]
            g = [r for r in gov if r["kind"] == "idle"]
            if b and g:
                idle_rows.append((summarise_idle(b)["kib_per_conn"], summarise_idle(g)["kib_per_conn"]))
            continue
        b = [r for r in base if r["kind"] == "load"]
        g = [r for r in gov if r["kind"] == "load"]
        if not b or not g:
            if b or g:
                t.add([sc, "not measured: " + ("sluice-gov" if b else "sluice") + " has no result"])
            continue
        any_row = True
        sb, sg = summarise_load(b), summarise_load(g)
        # Paired ratios: the two variants of one round ran next to each other. Rounds in which
        # other processes took the proxy CPU in either run are left out when clean pairs exist.
        by_round = {r["round"]: r for r in b}
        pairs = [(by_round[r["round"]], r) for r in g if r["round"] in by_round]
        clean = [(x, y) for x, y in pairs if clean_run(x) and clean_run(y)]
        noisy = not clean
        use = clean or pairs
        ratio = median([y["rps"] / x["rps"] for x, y in use if x.get("rps")])
        core = median([y["per_core"] / x["per_core"] for x, y in use
                       if x.get("per_core") and y.get("per_core")])
        rounds = " ".join(f"{y['rps'] / x['rps']:.2f}{'' if clean_run(x) and clean_run(y) else '*'}"
                          for x, y in sorted(pairs, key=lambda p: p[0]["round"]) if x.get("rps"))
        t.add([sc + (" (noisy)" if noisy else ""), fmt_int(sb["rps"]), fmt_int(sg["rps"]),
               fmt_f(ratio, 2), rounds or "-", fmt_f(core, 2),
               fmt_f(sb["cpu_us_per_req"], 2), fmt_f(sg["cpu_us_per_req"], 2),
               fmt_ms(sb["p99_us"]), fmt_ms(sg["p99_us"]), f">= {TARGET:.2f}",
               "-" if ratio is None else ("PASS" if ratio >= TARGET else "FAIL")])
    if not any_row and not idle_rows:
        return 0
    text = ["== issue 3: governance overhead (sluice-gov / sluice, same run) ==", t.text()]
    md = ["## Issue 3 target: governance overhead (sluice-gov / sluice)\n",
          "`sluice-gov` = the `sluice` configuration plus five rate-limit rules (limits far above "
          "the load), a circuit breaker and outlier detection. The req/s columns are medians as "
          "in the tables above; the ratios are medians of the per-round ratios sluice-gov / sluice "
          "(the two run next to each other in every round), over the rounds in which neither lost "
          f"more than {OTHER_PCT_LIMIT:g}% of the proxy CPU to other processes; `per round` lists "
          "every round's req/s ratio, `*` = a noisy round.\n", t.markdown(), ""]
    for kb, kg in idle_rows:
        line = (f"idle: {fmt_f(kb, 2)} KiB per connection for sluice, {fmt_f(kg, 2)} for sluice-gov")
        text.append(line)
        md.append(f"- {line}\n")
    print("\n".join(text) + "\n")
    with open(md_path, "a") as f:
        f.write("\n" + "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
