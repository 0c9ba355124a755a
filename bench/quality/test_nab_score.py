"""Known answers of the NAB scorer (python3 -m unittest discover -s bench/quality)."""

import math
import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nab_score as nab  # noqa: E402

STANDARD, LOW_FP, LOW_FN = nab.DEFAULT_PROFILES


def labelled(n, windows, name="f"):
    """A file of n rows with timestamps 0..n-1 and windows given as row indices."""
    return nab.LabelledFile(name, list(range(n)), windows)


def flags_at(n, rows, value=1.0):
    s = [0.0] * n
    for r in rows:
        s[r] = value
    return s


class SigmoidTest(unittest.TestCase):
    def test_values_from_the_paper(self):
        self.assertAlmostEqual(nab.scaled_sigmoid(-1.0), 0.98661, places=5)
        self.assertAlmostEqual(nab.scaled_sigmoid(-0.5), 0.84828, places=5)
        self.assertAlmostEqual(nab.scaled_sigmoid(0.0), 0.0, places=12)
        self.assertAlmostEqual(nab.scaled_sigmoid(1.0), -0.98661, places=5)
        self.assertEqual(nab.scaled_sigmoid(3.5), -1.0)

    def test_probation_length(self):
        self.assertEqual(nab.probation_length(1000), 150)
        self.assertEqual(nab.probation_length(4032), 604)   # floor(604.8)
        self.assertEqual(nab.probation_length(10000), 750)  # capped at 0.15 * 5000
        self.assertEqual(nab.probation_rows(4730), 709)


class PerfectAndNullTest(unittest.TestCase):
    def setUp(self):
        self.n = 1000
        # two files: two windows, and none
        self.a = labelled(self.n, [(300, 399), (700, 749)], "a")
        self.b = labelled(self.n, [], "b")

    def test_perfect_detector_scores_100(self):
        files = [(self.a, flags_at(self.n, [300, 700])), (self.b, [0.0] * self.n)]
        for p in nab.DEFAULT_PROFILES:
            r = nab.nab_scores(files, [p])[p.name]
            self.assertAlmostEqual(r["score"], 100.0, places=9, msg=p.name)
            self.assertAlmostEqual(r["raw"], 2 * p.tp_weight, places=9)
            self.assertEqual(r["threshold"], 1.0)

    def test_null_detector_scores_0(self):
        files = [(self.a, [0.0] * self.n), (self.b, [0.0] * self.n)]
        for p in nab.DEFAULT_PROFILES:
            r = nab.nab_scores(files, [p])[p.name]
            self.assertEqual(r["threshold"], nab.NEVER)
            self.assertAlmostEqual(r["score"], 0.0, places=12)
            self.assertAlmostEqual(r["raw"], -2 * p.fn_weight)

    def test_a_detector_firing_everywhere_scores_below_0(self):
        files = [(self.a, [1.0] * self.n), (self.b, [1.0] * self.n)]
        raw, _ = nab.score_file(self.a, [1.0] * self.n, 0.5, STANDARD)
        null = nab.null_score(files, STANDARD)
        perfect = nab.perfect_score(files, STANDARD)
        self.assertLess(nab.normalise(raw, null, perfect), 0)


class WindowTest(unittest.TestCase):
    n = 1000
    window = (500, 599)  # 100 rows

    def score_one(self, row, profile=STANDARD):
        lf = labelled(self.n, [self.window])
        return nab.score_file(lf, flags_at(self.n, [row]), 1.0, profile)[0]

    def test_first_row_earns_tp_weight(self):
        self.assertAlmostEqual(self.score_one(500), 1.0, places=12)

    def test_early_detection_beats_late(self):
        early, middle, late = self.score_one(505), self.score_one(550), self.score_one(599)
        self.assertGreater(early, middle)
        self.assertGreater(middle, late)
        self.assertGreater(late, 0)
        # NAB: position -(right - i + 1) / width
        self.assertAlmostEqual(middle, nab.scaled_sigmoid(-50 / 100) / nab.MAX_TP, places=12)
        self.assertAlmostEqual(late, nab.scaled_sigmoid(-1 / 100) / nab.MAX_TP, places=12)

    def test_only_the_first_detection_in_a_window_counts(self):
        lf = labelled(self.n, [self.window])
        one = nab.score_file(lf, flags_at(self.n, [520]), 1.0, STANDARD)[0]
        many = nab.score_file(lf, flags_at(self.n, [520, 521, 560, 599]), 1.0, STANDARD)[0]
        self.assertAlmostEqual(one, many, places=12)

    def test_missed_window_costs_fn_weight(self):
        lf = labelled(self.n, [self.window])
        for p in nab.DEFAULT_PROFILES:
            self.assertEqual(nab.score_file(lf, [0.0] * self.n, 1.0, p)[0], -p.fn_weight)


class FalsePositiveTest(unittest.TestCase):
    n = 1000
    window = (500, 599)

    def fp_cost(self, row, profile):
        lf = labelled(self.n, [self.window])
        # the window is detected at its first row in both runs: the difference is the FP
        with_fp = nab.score_file(lf, flags_at(self.n, [500, row]), 1.0, profile)[0]
        without = nab.score_file(lf, flags_at(self.n, [500]), 1.0, profile)[0]
        return with_fp - without

    def test_fp_before_any_window_costs_the_profile_weight(self):
        self.assertAlmostEqual(self.fp_cost(200, STANDARD), -0.11, places=12)
        self.assertAlmostEqual(self.fp_cost(200, LOW_FP), -0.22, places=12)
        self.assertAlmostEqual(self.fp_cost(200, LOW_FN), -0.11, places=12)

    def test_fp_after_a_window_is_weighted_by_its_distance(self):
        # right after the window: 1 / (width - 1) past it, almost free
        just_after = self.fp_cost(600, STANDARD)
        self.assertAlmostEqual(just_after, 0.11 * nab.scaled_sigmoid(1 / 99), places=12)
        self.assertGreater(just_after, -0.01)
        # one window width past it
        self.assertAlmostEqual(self.fp_cost(698, STANDARD), 0.11 * nab.scaled_sigmoid(99 / 99),
                               places=12)
        # more than 3 widths past it: the full weight
        self.assertAlmostEqual(self.fp_cost(950, STANDARD), -0.11, places=12)
        self.assertLess(self.fp_cost(950, STANDARD), self.fp_cost(650, STANDARD))


class ProbationTest(unittest.TestCase):
    def test_detections_in_the_probationary_period_are_ignored(self):
        n = 1000  # probation: rows 0..149
        lf = labelled(n, [(500, 599)])
        base = nab.score_file(lf, flags_at(n, [510]), 1.0, STANDARD)[0]
        noisy = nab.score_file(lf, flags_at(n, [510] + list(range(0, 150))), 1.0, STANDARD)[0]
        self.assertEqual(base, noisy)
        after = nab.score_file(lf, flags_at(n, [510, 150]), 1.0, STANDARD)[0]
        self.assertAlmostEqual(after - base, -0.11, places=12)

    def test_a_window_inside_the_probationary_period_does_not_count(self):
        n = 1000
        lf = labelled(n, [(50, 99), (500, 599)])
        self.assertEqual(lf.scored_windows, [1])
        self.assertEqual(nab.score_file(lf, [0.0] * n, 1.0, STANDARD)[0], -1.0)
        # a probationary window still anchors the distance of later false positives
        self.assertAlmostEqual(lf.value[100], nab.scaled_sigmoid(1 / 49), places=12)

    def test_the_sweep_ignores_probationary_rows(self):
        n = 1000
        lf = labelled(n, [(500, 599)])
        scores = flags_at(n, [500], 0.5)
        scores[10] = 0.9  # the highest score, but in the probationary period
        threshold, raw = nab.optimise_threshold([(lf, scores)], STANDARD)
        self.assertEqual((threshold, raw), (0.5, 1.0))


class ThresholdTest(unittest.TestCase):
    def setUp(self):
        rng = random.Random(7)
        self.files = []
        for k in range(3):
            n = 2000
            windows = [(600 + 400 * k, 700 + 400 * k), (1500, 1599)]
            lf = labelled(n, windows, "f%d" % k)
            scores = [round(rng.random() * 0.6, 2) for _ in range(n)]
            for start, end in windows:  # a bump in each window, rising early
                for i in range(start + 10, end):
                    scores[i] = 0.8 if i < start + 20 else 0.65
            self.files.append((lf, scores))

    def test_the_sweep_agrees_with_scoring_each_file(self):
        for p in nab.DEFAULT_PROFILES:
            for threshold, total in nab.sweep(self.files, p):
                summed = sum(nab.score_file(lf, s, threshold, p)[0] for lf, s in self.files)
                self.assertAlmostEqual(total, summed, places=9)

    def test_optimisation_finds_the_best_threshold(self):
        threshold, raw = nab.optimise_threshold(self.files, STANDARD)
        # the bumps stand out at 0.8 and 0.65; noise reaches 0.6
        self.assertIn(threshold, (0.65, 0.8))
        candidates = sorted({s for _, ss in self.files for s in ss} | {0.7, 0.9})
        for t in candidates:
            other = sum(nab.score_file(lf, s, t, STANDARD)[0] for lf, s in self.files)
            self.assertLessEqual(other, raw + 1e-9, msg="threshold %s" % t)

    def test_threshold_is_applied_as_greater_or_equal(self):
        lf = labelled(1000, [(500, 599)])
        scores = flags_at(1000, [500], 0.7)
        self.assertEqual(nab.score_file(lf, scores, 0.7, STANDARD)[0], 1.0)
        self.assertEqual(nab.score_file(lf, scores, 0.7000001, STANDARD)[0], -1.0)

    def test_ties_keep_the_highest_threshold(self):
        # nothing scored is outside the window, so 0.9 and 0.3 flag the same first row
        lf = labelled(1000, [(500, 599)])
        scores = flags_at(1000, [500], 0.9)
        scores[550] = 0.3
        self.assertEqual(nab.optimise_threshold([(lf, scores)], STANDARD), (0.9, 1.0))


class RewardLowFNTest(unittest.TestCase):
    def test_a_miss_costs_more(self):
        lf = labelled(1000, [(300, 399), (700, 799)])
        caught_one = flags_at(1000, [300])
        std = nab.score_file(lf, caught_one, 1.0, STANDARD)[0]
        low_fn = nab.score_file(lf, caught_one, 1.0, LOW_FN)[0]
        self.assertAlmostEqual(std, 0.0)
        self.assertAlmostEqual(low_fn, -1.0)

    def test_it_prefers_a_noisy_detector_that_misses_nothing(self):
        n = 1000
        lf = labelled(n, [(300, 399), (700, 799)])
        noisy = flags_at(n, [300, 700] + list(range(160, 180)))  # 20 false positives
        quiet = flags_at(n, [300])                                # misses a window

        def norm(scores, p):
            r = nab.nab_scores([(lf, scores)], [p])[p.name]
            return r["score"]

        self.assertLess(norm(noisy, STANDARD), norm(quiet, STANDARD))
        self.assertGreater(norm(noisy, LOW_FN), norm(quiet, LOW_FN))
        self.assertAlmostEqual(norm(noisy, STANDARD), 100 * (4 - 20 * 0.11) / 4, places=9)
        self.assertAlmostEqual(norm(noisy, LOW_FN), 100 * (6 - 20 * 0.11) / 6, places=9)


class LabelsTest(unittest.TestCase):
    def test_repeated_timestamps_use_the_first_occurrence(self):
        ts = list(range(100)) + [99, 99] + list(range(100, 300))
        lf = nab.LabelledFile("dup", ts, [(150, 199)])
        self.assertEqual(lf.window_of.count(0), 50)
        self.assertEqual(lf.window_of[ts.index(150)], 0)

    def test_a_window_edge_must_be_a_row(self):
        with self.assertRaises(ValueError):
            nab.LabelledFile("bad", list(range(0, 100, 5)), [(12, 40)])

    def test_parse_time_is_utc(self):
        self.assertEqual(nab.parse_time("1970-01-01 00:00:00"), 0)
        self.assertEqual(nab.parse_time("2014-04-10 07:15:00.000000"), 1397114100)

    def test_profiles_file(self):
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "..", "shared", "nab-dev", "config", "profiles.json")
        if not os.path.exists(path):
            self.skipTest("no NAB data next to the repository")
        loaded = {p.name: p for p in nab.load_profiles(path)}
        for p in nab.DEFAULT_PROFILES:
            q = loaded[p.name]
            self.assertEqual((q.tp_weight, q.fp_weight, q.fn_weight),
                             (p.tp_weight, p.fp_weight, p.fn_weight))


class EventMetricsTest(unittest.TestCase):
    def test_runs_outside_windows_are_single_false_alarms(self):
        n = 1000
        lf = labelled(n, [(300, 399), (700, 799)])
        flags = flags_at(n, [10, 11] + [200, 201, 202] + [250] + [350, 351] + [400, 401])
        m = nab.event_metrics([(lf, [bool(x) for x in flags])])
        # rows 10, 11 are probationary; 200-202 one event, 250 one, 400-401 one
        self.assertEqual(m["windows"], 2)
        self.assertEqual(m["detected"], 1)
        self.assertEqual(m["false_events"], 3)
        self.assertAlmostEqual(m["recall"], 0.5)
        self.assertAlmostEqual(m["precision"], 0.25)

    def test_no_flags(self):
        lf = labelled(1000, [(300, 399)])
        m = nab.event_metrics([(lf, [False] * 1000)])
        self.assertEqual((m["recall"], m["precision"]), (0.0, None))


if __name__ == "__main__":
    unittest.main()
