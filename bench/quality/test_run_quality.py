"""The harness's pure parts: fit bodies and series ids."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_quality as rq  # noqa: E402


class FitBodyTest(unittest.TestCase):
    def test_repeated_timestamps_keep_the_first_row(self):
        body = rq.fit_body([10, 20, 20, 20, 30, 40], [1.0, 2.0, 9.0, 9.0, 3.0, 4.0], 5)
        self.assertEqual(body, {"timestamps": [10, 20, 30], "values": [1.0, 2.0, 3.0]})

    def test_only_the_probationary_rows(self):
        body = rq.fit_body(list(range(100)), [float(i) for i in range(100)], 15)
        self.assertEqual(len(body["timestamps"]), 15)


class SeriesIdTest(unittest.TestCase):
    def test_ids_are_valid_and_distinct(self):
        a = rq.series_id("iforest", "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv")
        b = rq.series_id("robust", "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv")
        self.assertRegex(a, rq.SERIES_ID)
        self.assertNotEqual(a, b)
        self.assertRegex(rq.series_id("x", "a b/c+d (1).csv"), rq.SERIES_ID)


if __name__ == "__main__":
    unittest.main()
