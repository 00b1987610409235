"""Unit tests of scripts/tvsa_json.py and scripts/summarize.py (issue 13): the statistics over
rounds (median, spread, the overlap rule, the prefix rule of the highest step), the pass rule of
a step, the bench's saturation rule and the machine CPU accounting (issue 20), on synthetic JSON.
Run by tests/scripts_stats.sh; python3 -m unittest, standard library only."""
import json
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import summarize  # noqa: E402
import tvsa_json as tj  # noqa: E402

BOUND_US = 500000.0


def step(target, rps=1000.0, done=None, est=None, timeouts=0, errors=0, p99=1000, p999=2000,
         ctx=1.0):
    """One synthetic loadgen ramp step."""
    done = target * 100 if done is None else done
    return {"connections": {"target": target, "established": target if est is None else est,
                            "failed": 0},
            "duration_s": 2.0,
            "requests": {"completed": done, "per_sec": rps, "errors": errors,
                         "timeouts": timeouts, "mismatches": 0},
            "latency_us": {"p50": 100, "p99": p99, "p999": p999, "max": p999 * 2},
            "server": {"ctx_switches_per_request": ctx, "cpu_us_per_request": 5.0,
                       "cpu_s": {"user": 0.5, "sys": 1.5}},
            "loadgen": {"cpu_s": {"user": 0.2, "sys": 0.8}}}


class Spread(unittest.TestCase):
    def test_median_odd_even_and_missing(self):
        self.assertEqual(tj.spread([3, 1, 2]), (2, 1, 3))
        self.assertEqual(tj.spread([4, 1, 3, 2]), (2.5, 1, 4))
        self.assertEqual(tj.spread([1000, 100], low=True), (100, 100, 1000))
        self.assertEqual(tj.spread([None, 5, "x", 7, float("nan")]), (6.0, 5, 7))
        self.assertIsNone(tj.spread([]))
        self.assertIsNone(tj.spread([None]))

    def test_format(self):
        self.assertEqual(tj.fmt_spread((2, 1, 3), str), "2 (1–3)")
        self.assertEqual(tj.fmt_spread((2, 2, 2), str), "2")
        # A spread that rounds to one figure is shown as that figure.
        self.assertEqual(tj.fmt_spread((1.21, 1.2, 1.22), lambda v: "%.1f" % v), "1.2")
        self.assertEqual(tj.fmt_spread(None, str), "n/a")
        self.assertEqual(summarize.bold_spread((1000, 500, 1000), summarize.fmt_int),
                         "**1,000** (500–1,000)")


class Overlap(unittest.TestCase):
    def test_overlapping_ranges_are_noise(self):
        self.assertEqual(tj.compare_spreads((10, 8, 12), (11, 9, 13)), "within noise")
        # Touching ranges overlap too.
        self.assertEqual(tj.compare_spreads((10, 8, 12), (14, 12, 15)), "within noise")

    def test_disjoint_ranges_differ(self):
        self.assertEqual(tj.compare_spreads((20, 18, 22), (10, 8, 12)), "higher")
        self.assertEqual(tj.compare_spreads((10, 8, 12), (20, 18, 22)), "lower")

    def test_margin(self):
        # Disjoint, but the medians are 5% apart: within a 10% margin.
        self.assertEqual(tj.compare_spreads((105, 105, 105), (100, 100, 100), 0.10), "within noise")
        self.assertEqual(tj.compare_spreads((105, 105, 105), (100, 100, 100)), "higher")

    def test_verdict_says_within_noise_with_both_ranges(self):
        v = summarize.versus("a", (10, 8, 12), "b", (11, 9, 13), str, "x")
        self.assertIn("within noise", v)
        self.assertIn("10 (8–12)", v)
        self.assertIn("11 (9–13)", v)


class PassRule(unittest.TestCase):
    def test_clean_step_passes(self):
        ok, why, notes = tj.step_verdict(step(100), BOUND_US)
        self.assertTrue(ok)
        self.assertEqual((why, notes), ([], []))

    def test_a_few_timeouts_pass_and_are_reported(self):
        # 2 timeouts of 425,000 requests, 5,000 connections: under 0.1% and under 1%.
        ok, why, notes = tj.step_verdict(step(5000, done=425000, timeouts=2), BOUND_US)
        self.assertTrue(ok, why)
        self.assertEqual(notes, ["2 timeouts of 425,002 requests"])

    def test_timeouts_of_unserved_connections_fail(self):
        # A pool of 50 at 100 connections: 200 timeouts among 741,000 requests (0.03%) but 200%
        # of the connections.
        ok, why, _ = tj.step_verdict(step(100, done=741000, timeouts=200), BOUND_US)
        self.assertFalse(ok)
        self.assertIn("200 timeouts of 741,200 requests", why)

    def test_many_timeouts_fail(self):
        ok, _, _ = tj.step_verdict(step(100000, done=100000, timeouts=200), BOUND_US)
        self.assertFalse(ok)

    def test_tail_is_p999(self):
        ok, why, _ = tj.step_verdict(step(10, p99=1000, p999=600000), BOUND_US)
        self.assertFalse(ok)
        self.assertTrue(why[0].startswith("p99.9 "), why)
        st = step(10, p99=600000)
        del st["latency_us"]["p999"]
        ok, why, _ = tj.step_verdict(st, BOUND_US)
        self.assertFalse(ok)
        self.assertTrue(why[0].startswith("p99 "), why)

    def test_unestablished_and_errors_fail(self):
        self.assertFalse(tj.step_verdict(step(100, est=99), BOUND_US)[0])
        self.assertFalse(tj.step_verdict(step(100, errors=1), BOUND_US)[0])


class Prefix(unittest.TestCase):
    def test_a_failing_middle_step_ends_the_count(self):
        steps = [step(10), step(200, timeouts=44, done=1000), step(500), step(2000)]
        best, best_step, fail = tj.highest_prefix(steps, BOUND_US)
        self.assertEqual(best, 10)
        self.assertIs(best_step, steps[0])
        self.assertEqual(fail[0], 200)

    def test_order_of_the_steps_does_not_matter(self):
        steps = [step(500), step(10), step(200, errors=3)]
        self.assertEqual(tj.highest_prefix(steps, BOUND_US)[0], 10)

    def test_all_pass_and_none_pass(self):
        best, _, fail = tj.highest_prefix([step(10), step(100)], BOUND_US)
        self.assertEqual((best, fail), (100, None))
        best, _, fail = tj.highest_prefix([step(10, errors=1), step(100)], BOUND_US)
        self.assertIsNone(best)
        self.assertEqual(fail[0], 10)


class Saturation(unittest.TestCase):
    def point(self, rps, server, client, us):
        return {"rps": rps, "server_cores": server, "client_cores": client, "us_per_req": us}

    def test_a_server_not_saturated_gives_no_verdict(self):
        v = tj.bench_verdict(self.point(60000, 0.6, 0.5, 5.0), self.point(100000, 1.0, 0.8, 4.5), 0.9)
        self.assertTrue(v.startswith("client-bound: no verdict"), v)
        self.assertIn("by server CPU per request 0.900", v)
        self.assertNotIn("req/s", v)

    def test_a_saturated_client_gives_no_verdict(self):
        v = tj.bench_verdict(self.point(60000, 1.0, 0.97, 5.0), self.point(100000, 1.0, 0.8, 4.5), 0.9)
        self.assertTrue(v.startswith("client-bound: no verdict"), v)

    def test_server_bound_gives_the_ratio(self):
        v = tj.bench_verdict(self.point(85000, 0.99, 0.8, 5.0), self.point(100000, 1.0, 0.8, 4.5), 0.9)
        self.assertTrue(v.startswith("0.850  MISSED"), v)
        v = tj.bench_verdict(self.point(95000, 0.99, 0.8, 5.0), self.point(100000, 1.0, 0.8, 4.5), 0.9)
        self.assertTrue(v.startswith("0.950  ok"), v)

    def test_loadgen_against_epoll_client(self):
        pt = lambda rps, srv, cli, us: {"rps": rps, "server_cores": srv, "client_cores": cli,
                                        "client_us_per_req": us}
        v = tj.client_verdict(pt(90000, 0.6, 0.6, 4.4), pt(60000, 0.4, 0.4, 4.0))
        self.assertTrue(v.startswith("no verdict: neither side saturated"), v)
        self.assertIn("client CPU per request: loadgen 4.40 us, epoll-client 4.00 us (ratio 0.909)", v)
        v = tj.client_verdict(pt(90000, 0.9, 0.97, 4.4), pt(100000, 0.9, 0.99, 4.0))
        self.assertTrue(v.startswith("0.900  MISSED   (req/s, both clients at their core"), v)
        v = tj.client_verdict(pt(100000, 1.0, 0.8, 4.4), pt(100000, 1.0, 0.7, 4.0))
        self.assertTrue(v.startswith("1.000  ok   (req/s, server-bound in both"), v)

    def test_rule(self):
        self.assertTrue(tj.server_bound(0.95, 0.5))
        self.assertFalse(tj.server_bound(0.94, 0.5))
        self.assertFalse(tj.server_bound(1.0, 0.95))
        self.assertFalse(tj.server_bound(None, 0.5))


class MachineCpu(unittest.TestCase):
    # A fixed-load run measured on this machine (tick-sampled busy fields 2.06 s, idle 3.01 s,
    # 3.12 s on 2 CPUs, server + loadgen rusage 2.78 s), in clock ticks of 100 Hz.
    S0 = "cpu  1000 0 2000 50000 100 0 300 0 0 0"
    S1 = "cpu  1019 0 2061 50300 101 0 426 0 0 0"

    def test_busy_is_wall_minus_idle(self):
        busy = tj.machine_busy_s(self.S0, self.S1, 3.12, 2, 100)
        self.assertAlmostEqual(busy, 2 * 3.12 - 3.01, places=6)
        # The processes' own (exact) CPU fits inside it: "everything else" is not negative.
        self.assertGreaterEqual(busy, 2.78)

    def test_the_tick_sum_undercounts(self):
        # The old figure: what made "everything else" negative in the reference run.
        self.assertAlmostEqual(tj.machine_busy_ticks_s(self.S0, self.S1, 100), 2.06, places=6)
        self.assertLess(tj.machine_busy_ticks_s(self.S0, self.S1, 100), 2.78)

    def test_run_noise(self):
        d = tempfile.mkdtemp(prefix="tvsa-stats-")
        try:
            os.makedirs(os.path.join(d, "servers"))
            os.makedirs(os.path.join(d, "loadgen"))
            with open(os.path.join(d, "servers", "fixed-async.stopped.json"), "w") as f:
                json.dump({"event": "stopped", "rusage": {"user_s": 0.05, "sys_s": 0.88}}, f)
            with open(os.path.join(d, "loadgen", "fixed-async.json"), "w") as f:
                json.dump({"steps": [step(50)]}, f)       # 1.0 s in the measurement window
            rec = {"tag": "fixed-async", "machine_busy_cpu_s": 3.23, "measured_wall_s": 3.12,
                   "loadgen_cpu_s": 1.85}
            wall, busy, srv, lg, other = tj.run_noise(d, rec)
            self.assertAlmostEqual(srv, 0.93 / 3.12)
            self.assertAlmostEqual(lg, 1.85 / 3.12)        # the whole rusage wins
            self.assertAlmostEqual(other, (3.23 - 0.93 - 1.85) / 3.12)
            del rec["loadgen_cpu_s"]
            self.assertAlmostEqual(tj.run_noise(d, rec)[3], 1.0 / 3.12)
        finally:
            shutil.rmtree(d)


class Summary(unittest.TestCase):
    """summarize.py over a synthetic three-round directory."""

    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="tvsa-summary-")
        plan = {"rounds": 3, "p99_bound_ms": 500,
                "models": [{"label": "threaded-tpc", "title": "threads"},
                           {"label": "async", "title": "async"},
                           {"label": "python-asyncio", "title": "Python asyncio",
                            "skipped": "not built: bench/python/async_echo.py is missing"}]}
        with open(os.path.join(self.d, "plan.json"), "w") as f:
            json.dump(plan, f)
        # threads: round 2's 200 step fails (44 timeouts) while 500 passes: 200 must not count.
        ramps = {"threaded-tpc": [[step(10), step(200), step(500), step(2000, errors=5)],
                                  [step(10), step(200, timeouts=44, done=1000), step(500), step(2000)],
                                  [step(10), step(200), step(500), step(2000)]],
                 "async": [[step(10), step(200), step(500), step(2000)]] * 3}
        fixed = {"threaded-tpc": [1.00, 1.02, 0.98], "async": [0.93, 1.01, 0.95]}
        for r in range(3):
            rd = os.path.join(self.d, "r%d" % (r + 1))
            os.makedirs(os.path.join(rd, "loadgen"))
            for m in ramps:
                with open(os.path.join(rd, "loadgen", "echo-%s.json" % m), "w") as f:
                    json.dump({"steps": ramps[m][r]}, f)
                with open(os.path.join(rd, "loadgen", "fixed-%s.json" % m), "w") as f:
                    json.dump({"steps": [step(50, ctx=fixed[m][r])]}, f)
        self.res = summarize.Results(self.d)

    def tearDown(self):
        shutil.rmtree(self.d)

    def test_columns_and_skips(self):
        self.assertEqual(self.res.labels(), ["threaded-tpc", "async"])
        self.assertEqual(len(self.res.rounds), 3)
        self.assertEqual(self.res.skipped[0][0], "python-asyncio")

    def test_highest_step_median_and_spread(self):
        text, figs = summarize.concurrency_cell(self.res, "threaded-tpc")
        # Round 1 fails at 2,000 (errors), round 2 at 200, round 3 passes every step.
        self.assertEqual(figs["best"], (500, 10, 2000))
        self.assertTrue(text.startswith("**500** (10–2,000)"), text)
        self.assertIn("r2 at 200: 44 timeouts", text)
        text, figs = summarize.concurrency_cell(self.res, "async")
        self.assertEqual(figs["best"], (2000, 2000, 2000))
        self.assertIn("every step passed (every round)", text)

    def test_verdict_within_noise(self):
        figs = {m: summarize.ctx_figures(self.res, m) for m in self.res.labels()}
        self.assertEqual(figs["threaded-tpc"]["per_req"], (1.00, 0.98, 1.02))
        v = summarize.verdict_ctx(self.res, figs)
        self.assertIn("within noise", v)

    def test_python_pair(self):
        figs = {"python-threads": {"rss": (8000.0, 7000.0, 9000.0)},
                "python-asyncio": {"rss": (2000.0, 1900.0, 2100.0)}}
        v = summarize.in_python(figs, "rss", summarize.fmt_bytes, "RSS per connection")
        self.assertIn("asyncio 2.0 KiB (1.9 KiB–2.1 KiB), lower than threads", v)
        figs["python-asyncio"]["rss"] = (8500.0, 6000.0, 9500.0)
        self.assertIn("within noise", summarize.in_python(figs, "rss", summarize.fmt_bytes, "x"))
        self.assertIsNone(summarize.in_python({}, "rss", summarize.fmt_bytes, "x"))

    def test_switch_cost_read_generically(self):
        self.res.switch = {"schema": "x/1", "ns_per_switch": {"futex_threads": 1234.5,
                                                               "coroutine": 9.25},
                           "note": "text is skipped", "iterations": 100000}
        v = summarize.switch_cost_text(self.res)
        self.assertIn("ns_per_switch.futex_threads 1234.5", v)
        self.assertIn("ns_per_switch.coroutine 9.2", v)
        self.assertIn("iterations 100000,", v + ",")
        self.assertNotIn("note", v)
        self.assertNotIn("schema", v)
        self.res.switch = None
        self.assertIsNone(summarize.switch_cost_text(self.res))

    def test_summary_written(self):
        summarize.main(["summarize.py", self.d])
        with open(os.path.join(self.d, "summary.md")) as f:
            text = f.read()
        self.assertIn("3 rounds", text)
        self.assertIn("- Column *Python asyncio* skipped: not built", text)
        self.assertIn("| Concurrent connections |", text)
        with open(os.path.join(self.d, "plots", "data", "echo-threaded-tpc.tsv")) as f:
            tsv = f.read().splitlines()
        # connections, req/s median min max, p99 median min max, ctx, passed in every round
        self.assertEqual(tsv[2].split("\t")[0], "200")
        self.assertEqual(tsv[2].split("\t")[-1], "0")
        self.assertEqual(tsv[1].split("\t")[-1], "1")


DNSPERF_OUT = """Statistics:

  Queries sent:         425284
  Queries completed:    425280 (100.00%)
  Queries lost:         4 (0.00%)

  Run time (s):         2.000033
  Queries per second:   212638.491465
"""


class BenchReport(unittest.TestCase):
    """make bench's report on synthetic result files: the rule decides every ratio line."""

    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="tvsa-bench-")

    def tearDown(self):
        shutil.rmtree(self.d)

    def loadgen(self, name, rnd, rps, server_cores, client_cores, us=5.0, timeouts=0):
        st = step(1000, rps=rps, timeouts=timeouts)
        st["duration_s"] = 2.0
        st["server"]["cpu_s"] = {"user": 0.0, "sys": server_cores * 2.0}
        st["server"]["cpu_us_per_request"] = us
        st["loadgen"]["cpu_s"] = {"user": 0.0, "sys": client_cores * 2.0}
        st["loadgen"]["cpu_us_per_request"] = 4.0
        with open(os.path.join(self.d, "%s.r%d.json" % (name, rnd)), "w") as f:
            json.dump({"steps": [st]}, f)

    def report(self, dns=""):
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            tj.cmd_bench_report(self.d, "2", "1000", "10000", dns)
        return buf.getvalue()

    def line(self, text, start):
        return [l for l in text.splitlines() if l.startswith(start)][0]

    def test_busy_server_gives_no_verdict_and_saturated_gives_ratio(self):
        for r in (1, 2):
            self.loadgen("async-echo", r, 60000 + r, 0.6, 0.5)       # 0.6 cores busy
            self.loadgen("bare-epoll-echo", r, 100000, 1.0, 0.8, us=4.5)
            self.loadgen("threaded-echo", r, 90000 + r, 0.99, 0.8)   # saturated, client not
            self.loadgen("bare-thread-echo", r, 100000, 1.0, 0.8)
        out = self.report()
        a = self.line(out, "async-echo / bare-epoll-echo")
        self.assertIn("client-bound: no verdict", a)
        self.assertIn("by server CPU per request 0.900", a)
        t = self.line(out, "threaded-echo / bare-thread-echo")
        self.assertIn("0.900  ok   (req/s, server-bound", t)
        # The best round is shown; a round that wrote nothing counts as bad.
        self.assertIn(" 60002 ", self.line(out, "async-echo "))
        self.assertTrue(self.line(out, "async-echo-api-event").endswith("no data (see async-echo-api-event.err)"))

    def test_bad_sums_every_round(self):
        self.loadgen("async-echo", 1, 100000, 1.0, 0.5, timeouts=3)
        self.loadgen("async-echo", 2, 90000, 1.0, 0.5, timeouts=4)
        best, bad, missing, _ = tj.bench_best(self.d, "async-echo", 2)
        self.assertEqual(best["rps"], 100000)
        self.assertEqual((bad, missing), (7, 0))
        best, bad, missing, _ = tj.bench_best(self.d, "async-echo", 3)
        self.assertEqual((bad, missing), (8, 1))

    def test_dnsperf_point(self):
        self.assertEqual(tj.parse_dnsperf(DNSPERF_OUT)["lost"], 4)
        self.assertAlmostEqual(tj.parse_dnsperf(DNSPERF_OUT)["qps"], 212638.491465)
        with open(os.path.join(self.d, "async-dns-dnsperf.r1.txt"), "w") as f:
            f.write(DNSPERF_OUT)
        with open(os.path.join(self.d, "async-dns-dnsperf.r1.cpu.json"), "w") as f:
            json.dump({"server_cpu_s": 2.0, "client_cpu_s": 1.2756, "wall_s": 2.0}, f)
        self.loadgen("async-dns-loadgen", 1, 250000, 1.0, 0.6)
        p = tj.bench_point(self.d, "async-dns-dnsperf", 1)
        self.assertAlmostEqual(p["client_us_per_req"], 1.2756e6 / 425280)
        self.assertEqual(p["lost"], 4)
        out = self.report("async-dns")
        d = self.line(out, "async-dns: loadgen / dnsperf")
        self.assertIn("1.176  ok", d)
        self.assertIn("dnsperf lost 4 over 2 rounds, 1 with no output: MISSED", d)
        # loadgen spent 4 us a query against dnsperf's 3: the CPU goal is missed.
        self.assertIn("dnsperf 3.00 us: MISSED", d)


class Noisy(unittest.TestCase):
    def test_a_round_above_the_threshold_is_named(self):
        d = tempfile.mkdtemp(prefix="tvsa-noisy-")
        try:
            with open(os.path.join(d, "plan.json"), "w") as f:
                json.dump({"noisy_cores": 0.3}, f)
            for r, busy in ((1, 1.1), (2, 2.5)):
                rd = os.path.join(d, "r%d" % r)
                os.makedirs(os.path.join(rd, "servers"))
                with open(os.path.join(rd, "servers", "echo-async.stopped.json"), "w") as f:
                    json.dump({"rusage": {"user_s": 0.5, "sys_s": 0.5}}, f)
                with open(os.path.join(rd, "runs.jsonl"), "w") as f:
                    # The same tag twice: the rerun (the last line) is the one that counts.
                    f.write(json.dumps({"tag": "echo-async", "scenario": "echo", "model": "async",
                                        "machine_busy_cpu_s": 9.0, "measured_wall_s": 1.0,
                                        "loadgen_cpu_s": 0.0}) + "\n")
                    f.write(json.dumps({"tag": "echo-async", "scenario": "echo", "model": "async",
                                        "machine_busy_cpu_s": busy, "measured_wall_s": 1.0,
                                        "loadgen_cpu_s": 0.0, "rerun_of_noisy_cores": 8.0}) + "\n")
            res = summarize.Results(d)
            noisy = summarize.noisy_rounds(res)
            self.assertEqual(list(noisy), [2])
            self.assertAlmostEqual(noisy[2][0][1], 1.5)
            self.assertIn("noisy in round 2", summarize.noisy_note(res, "echo", "v"))
            self.assertEqual(summarize.noisy_note(res, "hold", "v"), "v")
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
