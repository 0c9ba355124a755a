"""A scorer for the Numenta Anomaly Benchmark (NAB), standard library only.

Written from the NAB paper (Lavin and Ahmad 2015, "Evaluating Real-time Anomaly
Detection Algorithms -- the Numenta Anomaly Benchmark"; Ahmad et al. 2017) and
with the semantics of NAB's own scorer (numenta/NAB, nab/sweeper.py,
nab/scorer.py, nab/optimizer.py, nab/runner.py), so that its figures are
comparable with published NAB scores:

* Each labelled window [start, end] is a run of rows. A row i inside a window
  whose last row is R and whose width is W rows sits at the relative position
  -(R - i + 1) / W, in [-1, 0): -1 for the window's first row.
* scaled_sigmoid(x) = 2 / (1 + e^(5x)) - 1, and -1 for x > 3.
* Only the earliest detection in a window counts: it earns
  tpWeight * scaled_sigmoid(position) / scaled_sigmoid(-1), that is tpWeight for
  the first row of the window, less and less towards its end. A window without
  a detection costs -fnWeight.
* A detection outside every window costs fpWeight times
  scaled_sigmoid(distance past the preceding window's last row / (that window's
  width - 1)): little right after a window, nearly fpWeight further on; exactly
  -fpWeight when no window precedes it.
* The first min(floor(0.15 n), 0.15 * 5000) rows of a file of n rows (the
  probationary period) are not scored at all; a window none of whose rows is
  scored neither earns nor costs anything.
* A row is a detection when its score >= the threshold. One threshold is
  chosen per detector and profile for the whole corpus: the one with the best
  total (the per-file scores summed); among equal totals the highest threshold.
* normalised = 100 * (raw - null) / (perfect - null), where null is the total
  of the detector that never fires (-fnWeight per scored window) and perfect is
  tpWeight per labelled window (a detector that flags the first row of every
  window, as NAB's runner counts it).
"""

import csv
import datetime
import json
import math
import os

PROBATION_PERCENT = 0.15

NEVER = math.inf  # the threshold at which nothing is flagged


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def scaled_sigmoid(position):
    """NAB's weighting of a detection at a relative position: 0.98661 at -1
    (a window's left edge), 0 at 0 (its right edge), -0.98661 at 1, and -1
    beyond 3 (a false positive far from any window)."""
    if position > 3.0:
        return -1.0
    return 2.0 * sigmoid(-5.0 * position) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n_rows, percent=PROBATION_PERCENT):
    """Rows with an index below this value are in the probationary period.

    NAB: min(floor(percent * n), percent * 5000), i.e. at most 750 rows."""
    return min(math.floor(percent * n_rows), percent * 5000)


def probation_rows(n_rows, percent=PROBATION_PERCENT):
    """The number of rows in the probationary period (an integer)."""
    return int(math.ceil(probation_length(n_rows, percent)))


class Profile:
    """One scoring profile: the weights of NAB's cost matrix."""

    def __init__(self, name, tp_weight, fp_weight, fn_weight):
        self.name = name
        self.tp_weight = float(tp_weight)
        self.fp_weight = float(fp_weight)
        self.fn_weight = float(fn_weight)

    def __repr__(self):
        return "Profile(%r, tp=%g, fp=%g, fn=%g)" % (
            self.name, self.tp_weight, self.fp_weight, self.fn_weight)


# NAB's config/profiles.json, for when no file is given.
DEFAULT_PROFILES = [
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
]


def load_profiles(path):
    """Profiles from a NAB profiles.json, in the file's order."""
    with open(path) as f:
        raw = json.load(f)
    out = []
    for name, body in raw.items():
        cm = body["CostMatrix"]
        out.append(Profile(name, cm["tpWeight"], cm["fpWeight"], cm["fnWeight"]))
    return out


class LabelledFile:
    """The rows of one data file with what scoring needs to know about each.

    timestamps: one comparable value per row (Unix seconds here), in file order.
    windows: (start, end) pairs of timestamps, each equal to some row's
    timestamp, in order, not overlapping.

    Like NAB, a window is entered at the first row whose timestamp equals its
    start and left after the first row whose timestamp equals its end; its
    width is counted between the first occurrences of both (a few files repeat
    a timestamp)."""

    def __init__(self, name, timestamps, windows, probation_percent=PROBATION_PERCENT):
        self.name = name
        self.n = len(timestamps)
        self.probation = probation_length(self.n, probation_percent)
        self.windows = [tuple(w) for w in windows]
        first_index = {}
        for i, t in enumerate(timestamps):
            first_index.setdefault(t, i)
        for start, end in self.windows:
            for edge in (start, end):
                if edge not in first_index:
                    raise ValueError("%s: window edge %r is not the timestamp of any row"
                                     % (name, edge))
            if first_index[end] < first_index[start]:
                raise ValueError("%s: window %r ends before it starts" % (name, (start, end)))

        # Per row: the window it is in (index into self.windows) or -1, and the
        # unweighted value of a detection there: for a row in a window the
        # normalised sigmoid (1 at the window's first row), for a row outside
        # scaled_sigmoid of its distance past the preceding window (or -1).
        self.window_of = [-1] * self.n
        self.value = [0.0] * self.n
        pending = list(self.windows)
        cur = None          # (window index, right index, width)
        prev = None         # (right index, width) of the last window left
        next_window = 0
        for i, t in enumerate(timestamps):
            if pending and t == pending[0][0]:
                start, end = pending.pop(0)
                right = first_index[end]
                width = float(right - first_index[start] + 1)
                cur = (next_window, right, width)
                next_window += 1
            if cur is not None:
                index, right, width = cur
                self.window_of[i] = index
                self.value[i] = scaled_sigmoid(-(right - i + 1) / width) / MAX_TP
            elif prev is None:
                self.value[i] = -1.0
            else:
                right, width = prev
                if width > 1:
                    self.value[i] = scaled_sigmoid(abs(right - i) / (width - 1.0))
                else:  # NAB divides by zero here; its older scorer used 2.0
                    self.value[i] = scaled_sigmoid(2.0)
            if cur is not None and t == self.windows[cur[0]][1]:
                prev = (cur[1], cur[2])
                cur = None
        if pending:
            raise ValueError("%s: window %r was never entered (windows out of order?)"
                             % (name, pending[0]))
        self.scored_windows = sorted({self.window_of[i] for i in range(self.n)
                                      if i >= self.probation and self.window_of[i] >= 0})

    def scored(self, i):
        return i >= self.probation


def score_file(lf, scores, threshold, profile):
    """NAB's raw score of one file: rows with score >= threshold are detections.

    Returns (score, counts) with counts of scored rows tp, fp, fn, tn and of
    windows detected and missed."""
    if len(scores) != lf.n:
        raise ValueError("%s: %d scores for %d rows" % (lf.name, len(scores), lf.n))
    best = {}
    fp_sum = 0.0
    counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for i in range(lf.n):
        if not lf.scored(i):
            continue
        w = lf.window_of[i]
        hit = scores[i] >= threshold
        if w >= 0:
            counts["tp" if hit else "fn"] += 1
            if hit and w not in best:
                best[w] = lf.value[i]  # the earliest detection is the best one
        else:
            counts["fp" if hit else "tn"] += 1
            if hit:
                fp_sum += lf.value[i]
    total = profile.fp_weight * fp_sum
    for w in lf.scored_windows:
        if w in best:
            total += profile.tp_weight * best[w]
        else:
            total -= profile.fn_weight
    counts["windows_detected"] = len(best)
    counts["windows_missed"] = len(lf.scored_windows) - len(best)
    return total, counts


def sweep(files, profile):
    """Scores of the whole corpus at every threshold, as NAB's sweeper does.

    files: list of (LabelledFile, scores). Returns a list of
    (threshold, total) from the highest threshold (NEVER: nothing flagged) down
    to the lowest score present; the total at threshold t counts every scored
    row with score >= t as a detection."""
    rows = []
    n_windows = 0
    for f, (lf, scores) in enumerate(files):
        if len(scores) != lf.n:
            raise ValueError("%s: %d scores for %d rows" % (lf.name, len(scores), lf.n))
        n_windows += len(lf.scored_windows)
        for i in range(lf.n):
            if lf.scored(i):
                rows.append((scores[i], f, i))
    rows.sort(key=lambda r: r[0], reverse=True)

    best_in_window = {}   # (file, window) -> value of the best detection so far
    tp_sum = 0.0
    fp_sum = 0.0
    missed = n_windows
    out = [(NEVER, -profile.fn_weight * n_windows)]
    k = 0
    while k < len(rows):
        threshold = rows[k][0]
        while k < len(rows) and rows[k][0] == threshold:
            _, f, i = rows[k]
            lf = files[f][0]
            w = lf.window_of[i]
            v = lf.value[i]
            if w < 0:
                fp_sum += v
            else:
                key = (f, w)
                old = best_in_window.get(key)
                if old is None:
                    missed -= 1
                    best_in_window[key] = v
                    tp_sum += v
                elif v > old:
                    best_in_window[key] = v
                    tp_sum += v - old
            k += 1
        total = (profile.tp_weight * tp_sum + profile.fp_weight * fp_sum
                 - profile.fn_weight * missed)
        out.append((threshold, total))
    return out


def optimise_threshold(files, profile):
    """(threshold, raw total) with the best total; the highest threshold among ties."""
    best = None
    for threshold, total in sweep(files, profile):
        if best is None or total > best[1]:
            best = (threshold, total)
    return best


def null_score(files, profile):
    """The total of the detector that never fires."""
    return -profile.fn_weight * sum(len(lf.scored_windows) for lf, _ in files)


def perfect_score(files, profile):
    """tpWeight per labelled window: what flagging each window's first row earns."""
    return profile.tp_weight * sum(len(lf.windows) for lf, _ in files)


def normalise(raw, null, perfect):
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def nab_scores(files, profiles):
    """For each profile: the optimal threshold, raw, null, perfect, normalised
    score and the per-file raw scores at that threshold."""
    out = {}
    for p in profiles:
        threshold, raw = optimise_threshold(files, p)
        per_file = {}
        for lf, scores in files:
            per_file[lf.name] = score_file(lf, scores, threshold, p)
        null = null_score(files, p)
        perfect = perfect_score(files, p)
        out[p.name] = {
            "threshold": threshold,
            "raw": raw,
            "null": null,
            "perfect": perfect,
            "score": normalise(raw, null, perfect),
            "per_file": per_file,
        }
    return out


def event_metrics(files_flags):
    """Event-level precision and recall of yes/no detections, on scored rows.

    files_flags: list of (LabelledFile, flags). A window is detected when at
    least one of its scored rows is flagged; a false alarm event is a maximal
    run of consecutive flagged scored rows outside every window.
    recall = detected windows / scored windows;
    precision = detected windows / (detected windows + false alarm events)."""
    windows = detected = false_events = 0
    for lf, flags in files_flags:
        hit = set()
        in_run = False
        for i in range(lf.n):
            if not lf.scored(i):
                continue
            w = lf.window_of[i]
            if flags[i] and w >= 0:
                hit.add(w)
            outside_hit = bool(flags[i]) and w < 0
            if outside_hit and not in_run:
                false_events += 1
            in_run = outside_hit
        windows += len(lf.scored_windows)
        detected += len(hit)
    recall = detected / windows if windows else None
    precision = detected / (detected + false_events) if detected + false_events else None
    return {"windows": windows, "detected": detected, "false_events": false_events,
            "precision": precision, "recall": recall}


# ---- reading NAB's files ----

_EPOCH = datetime.datetime(1970, 1, 1)


def parse_time(text):
    """Unix seconds (UTC) of 'YYYY-MM-DD HH:MM:SS[.ffffff]'."""
    dt = datetime.datetime.fromisoformat(text.strip())
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return int((dt - _EPOCH).total_seconds())


def read_series(path):
    """(timestamps, values) of a NAB CSV with the header timestamp,value."""
    timestamps, values = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        ti, vi = header.index("timestamp"), header.index("value")
        for row in reader:
            if not row:
                continue
            timestamps.append(parse_time(row[ti]))
            values.append(float(row[vi]))
    return timestamps, values


def read_corpus(nab_dir):
    """[(relative path, timestamps, values, windows)] for every file that
    labels/combined_windows.json lists, sorted by path."""
    with open(os.path.join(nab_dir, "labels", "combined_windows.json")) as f:
        labels = json.load(f)
    out = []
    for rel in sorted(labels):
        path = os.path.join(nab_dir, "data", rel)
        if not os.path.exists(path):
            raise FileNotFoundError("%s is labelled but %s does not exist" % (rel, path))
        timestamps, values = read_series(path)
        windows = [(parse_time(a), parse_time(b)) for a, b in labels[rel]]
        out.append((rel, timestamps, values, windows))
    return out
