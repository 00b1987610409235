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


def switch_doc(futex=1000.0, coro=20.0, goal=True):
    """A synthetic switch-cost.json (schema tvsa-switch-cost/1)."""
    names = {"thread_futex": futex, "thread_pipe": 1200.0, "coro": coro, "swapcontext": 400.0,
             "fcontext_raw": 4.0, "libevent_callback": 18.0, "function": 2.0}
    doc = {"schema": "tvsa-switch-cost/1",
           "results": {k: {"ns": v, "ns_min": v, "ns_max": v, "unit": "switch"}
                       for k, v in names.items()}}
    if goal:
        doc["goal"] = {"coro_over_thread_futex": coro / futex, "max": 0.1, "met": coro / futex <= 0.1}
    return doc


class ResultsDir(unittest.TestCase):
    """A temporary results directory; write(REL, DOC) puts JSON (or text) at DIR/REL."""

    def setUp(self):
        self.d = tempfile.mkdtemp(prefix="tvsa-results-")

    def tearDown(self):
        shutil.rmtree(self.d)

    def write(self, rel, doc):
        path = os.path.join(self.d, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            if isinstance(doc, str):
                f.write(doc)
            else:
                json.dump(doc, f)


class CoroColumn(ResultsDir):
    """The coroutine column (issue 15) and the context-switching verdict on the cost of a switch
    (issues 15 and 20), over a synthetic three-round directory."""
    MODELS = ["threaded-tpc", "async", "async-coro"]

    def setUp(self):
        super().setUp()
        plan = {"rounds": 3, "p99_bound_ms": 500,
                "models": [{"label": m, "title": m} for m in self.MODELS]}
        self.write("plan.json", plan)
        self.write("switch-cost.json", switch_doc())
        fixed = {"threaded-tpc": [1.00, 1.02, 0.98], "async": [0.93, 1.01, 0.95],
                 "async-coro": [0.95, 0.97, 0.99]}
        rss = {"threaded-tpc": 9000.0, "async": 1200.0, "async-coro": 5000.0}
        for r in range(3):
            rd = "r%d" % (r + 1)
            for m in self.MODELS:
                # Two fixed-load steps: 5,000 + 5,000 requests over the server's life.
                self.write("%s/loadgen/fixed-%s.json" % (rd, m),
                           {"steps": [step(50, done=5000, ctx=fixed[m][r]),
                                      step(50, done=5000, ctx=fixed[m][r])]})
                hold = step(1000)
                hold["server"].update({"rss_per_conn_bytes": rss[m] + 100 * r,
                                       "vsz_per_conn_bytes": 40000.0})
                self.write("%s/loadgen/hold-%s.json" % (rd, m), {"steps": [hold]})
                # Saturated ramp: async batches (0.01/req), threads do not (1/req).
                sat = 0.01 if m == "async" else 1.0
                self.write("%s/loadgen/echo-%s.json" % (rd, m), {"steps": [step(1000, ctx=sat)]})
                stopped = {"event": "stopped", "rusage": {}}
                listening = {"event": "listening"}
                if m == "async-coro":
                    # 2 switches per request in round 1, 3 in round 2, 4 in round 3.
                    stopped["coro_switches"] = 10000 * (r + 2)
                    listening["coro_stack_kb"] = 32
                self.write("%s/servers/fixed-%s.stopped.json" % (rd, m), stopped)
                self.write("%s/servers/hold-%s.listening.json" % (rd, m), listening)
        self.res = summarize.Results(self.d)
        self.figs = {m: summarize.ctx_figures(self.res, m) for m in self.MODELS}


    def test_switch_costs_read_by_name(self):
        c = summarize.switch_costs(self.res)
        self.assertEqual(c["thread_futex"], 1000.0)
        self.assertEqual(c["coro"], 20.0)
        self.assertEqual(c["swapcontext"], 400.0)
        self.assertAlmostEqual(c["ratio"], 0.02)
        self.assertTrue(c["met"])
        # Without the goal object, the ratio is computed from the two measures.
        self.res.switch = switch_doc(futex=1000.0, coro=300.0, goal=False)
        c = summarize.switch_costs(self.res)
        self.assertAlmostEqual(c["ratio"], 0.3)
        self.assertFalse(c["met"])
        # Another schema is not read as this one.
        self.res.switch = {"schema": "x/1", "results": {"coro": {"ns": 1.0}}}
        self.assertIsNone(summarize.switch_costs(self.res))
        self.res.switch = None
        self.assertIsNone(summarize.switch_cost_text(self.res))

    def test_switch_cost_text(self):
        v = summarize.switch_cost_text(self.res)
        self.assertIn("futex 1,000 ns, pipe 1,200 ns", v)
        self.assertIn("coroutine (async/lib/coro) 20.0 ns", v)
        self.assertIn("coroutine / futex switch 0.020 (goal ≤ 0.10: met)", v)

    def test_user_level_switches_per_request(self):
        # coro_switches / every step's completed requests: 20,000/10,000 .. 40,000/10,000.
        self.assertEqual(self.figs["async-coro"]["user_per_req"], (3.0, 2.0, 4.0))
        self.assertIsNone(self.figs["async"]["user_per_req"])
        text, _ = summarize.ctx_cell(self.res, "async-coro")
        self.assertIn("user-level (coroutine) switches **3.00** (2.00–4.00)/req", text)

    def test_verdict_on_the_cost(self):
        v = summarize.verdict_ctx(self.res, self.figs)
        self.assertIn("a kernel switch costs 1,000 ns (futex ping-pong", v)
        self.assertIn("a coroutine switch 20.0 ns: 50× cheaper (agrees", v)
        self.assertIn("the coroutine model makes 3.00 (2.00–4.00) user-level switches per "
                      "request (≈ 60.0 ns of switching)", v)
        # A coroutine switch at a fifth of a kernel one misses the goal: the verdict says so.
        self.res.switch = switch_doc(futex=1000.0, coro=200.0)
        v = summarize.verdict_ctx(self.res, self.figs)
        self.assertIn("5× cheaper (disagrees", v)
        self.assertNotIn("(agrees: the goal", v)

    def test_light_load_is_not_a_disagreement(self):
        # Issue 20: equal counts at the light fixed load are not "disagrees"; under load the
        # event loop batches and that agrees.
        v = summarize.verdict_ctx(self.res, self.figs)
        light = [p for p in v.split("; ") if "light fixed load" in p]
        self.assertEqual(len(light), 1, v)
        self.assertIn("otherwise idle core", light[0])
        self.assertIn("does not test the claim", light[0])
        self.assertNotIn("disagrees", light[0])
        self.assertIn("under load (closed-loop ramp) the event loop batches", v)

    def test_cpu_per_request_for_every_model(self):
        v = summarize.verdict_ctx(self.res, self.figs)
        part = [p for p in v.split("; ") if p.startswith("server CPU per request:")][0]
        for m in self.MODELS:
            self.assertIn("%s 5.0" % m, part)

    def test_memory_of_a_coroutine(self):
        figs = {m: summarize.memory_cell(self.res, m)[1] for m in self.MODELS}
        self.assertEqual(figs["async-coro"]["stack_kb"], 32)
        self.assertIsNone(figs["async"]["stack_kb"])
        text, _ = summarize.memory_cell(self.res, "async-coro")
        self.assertIn("coroutine stacks 32 KiB each", text)
        v = summarize.verdict_memory(self.res, figs)
        self.assertIn("coroutines 5.0 KiB (4.9 KiB–5.1 KiB) RSS/conn", v)
        self.assertIn("the 32 KiB stack reserved", v)
        self.assertIn("agrees with the ~few KB claim, 1.8× less than a thread", v)
        self.assertIn("higher than a callback connection (1.3 KiB)", v)


class Hooks(ResultsDir):
    """What compare.sh adds from the other scripts: sweep.sh's row (issue 20), scale.sh's section
    and cell (issue 14), the RTT each figure was measured at (issue 19)."""

    def setUp(self):
        super().setUp()
        self.plan = {"rounds": 1, "p99_bound_ms": 500,
                     "models": [{"label": "threaded-tpc", "title": "threads"},
                                {"label": "async", "title": "async"},
                                {"label": "async-coro", "title": "coroutines"}],
                     "sweep": {"asked": True, "script": True}, "scale": {"asked": False},
                     "rtt": {"ms": 0.0, "scenarios": []}}
        self.write("plan.json", self.plan)
        for m in ("threaded-tpc", "async", "async-coro"):
            self.write("r1/loadgen/echo-%s.json" % m, {"steps": [step(10), step(100)]})


    def summary(self):
        summarize.main(["summarize.py", self.d])
        with open(os.path.join(self.d, "summary.md")) as f:
            return f.read()

    def row(self, text, start):
        rows = [l for l in text.splitlines() if l.startswith("| " + start)]
        self.assertEqual(len(rows), 1, start)
        return rows[0]

    def test_sweep_row(self):
        self.write("sweep/cells.json", {
            "schema": "tvsa-sweep-cells/1", "row": "Latency at 80% of capacity",
            "claim": "not in the textbook table", "latency": "open loop",
            "cells": {"threaded-tpc": {"text": "p99 1.1 ms"}, "async": {"text": "p99 1.4 ms"}},
            "verdict": "lowest p99: threads"})
        text = self.summary()
        row = self.row(text, "Latency at 80% of capacity |")
        self.assertIn("| p99 1.1 ms | p99 1.4 ms | not in the sweep", row)
        self.assertIn("- **Latency at 80% of capacity**: `scripts/sweep.sh`", text)
        self.assertIn("lowest p99: threads (open loop;", row)

    def test_sweep_asked_but_missing(self):
        row = self.row(self.summary(), "Latency at 80% of capacity |")
        self.assertIn("not measured: scripts/sweep.sh failed", row)
        self.plan["sweep"] = {"asked": True, "script": False}
        self.write("plan.json", self.plan)
        self.assertIn("not in this tree", self.row(self.summary(), "Latency at 80%"))
        self.plan["sweep"] = {"asked": False, "script": True}
        self.write("plan.json", self.plan)
        self.assertNotIn("Latency at 80%", self.summary())

    def test_scale_section_and_cell(self):
        self.write("scale/scale.md", "## Past one process\n\n| model | largest |\n|---|---|\n"
                                     "| async | 100,000 |\n")
        self.write("scale/cells.json", {"concurrent_connections":
                                        "async: 100,000 held; threaded-tpc: stops at 32,400 (pid_max)"})
        text = self.summary()
        self.assertIn("\n## Past one process\n", text)
        self.assertIn("| async | 100,000 |", text)
        row = self.row(text, "Concurrent connections |")
        self.assertIn("past one process (scale ramp, see *Past one process*): async: 100,000 "
                      "held; threaded-tpc: stops at 32,400 (pid_max)", row)
        # Before the other rows' sections: the scale section comes after the method.
        self.assertLess(text.index("## How each row was measured"), text.index("## Past one process"))
        self.assertLess(text.index("## Past one process"), text.index("## Other figures"))

    def test_scale_asked_but_missing(self):
        self.plan["scale"] = {"asked": True, "script": False}
        self.write("plan.json", self.plan)
        self.assertIn("Asked for (`--scale`) but not measured: scripts/scale.sh is not in this tree",
                      self.summary())

    def test_rtt_of_each_figure(self):
        text = self.summary()
        self.assertIn("Every figure on loopback", text)
        self.row(text, "Concurrent connections |")
        self.plan["rtt"] = {"ms": 20.0, "scenarios": ["echo", "hold"]}
        self.write("plan.json", self.plan)
        text = self.summary()
        self.row(text, "Concurrent connections (20 ms RTT) |")
        self.row(text, "Memory per connection (20 ms RTT) |")
        self.row(text, "Context switching (loopback) |")
        self.row(text, "CPU-bound work (loopback) |")
        self.row(text, "Latency at 80% of capacity (loopback) |")
        self.row(text, "Complexity |")
        self.assertIn("### Echo ramp (closed loop) — at 20 ms RTT (scripts/cluster.sh)", text)
        self.assertIn("### Fixed load\n", text)
        self.assertIn("**Round-trip time:** the `echo` and `hold` through "
                      "`scripts/cluster.sh --local 1 --rtt-ms 20`", text)


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

    def switch_report(self, doc):
        import contextlib
        import io
        path = os.path.join(self.d, "switch-cost.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            tj.cmd_switch_report(path)
        return buf.getvalue()

    def test_switch_report_goal(self):
        # The goal line: ok at a fiftieth, MISSED at a fifth, from the same run's two figures.
        text = self.switch_report(switch_doc(futex=1000.0, coro=20.0))
        self.assertIn("coro 20.0, thread_futex 1000.0, thread_pipe 1200.0", text)
        line = self.line(text, "coro / thread_futex switch")
        self.assertIn("0.0200  ok", line)
        line = self.line(self.switch_report(switch_doc(futex=1000.0, coro=200.0, goal=False)),
                         "coro / thread_futex switch")
        self.assertIn("0.2000  MISSED", line)
        self.assertIn("no figures", self.switch_report({"schema": "other/1"}))

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
