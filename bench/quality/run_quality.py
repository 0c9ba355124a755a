#!/usr/bin/env python3
"""make quality: detection quality of the module's detectors on NAB data.

Starts its own nginx with the built module, and for each detector and each
labelled file:
- a batch detector is fitted on the file's probationary period
  (POST /fit/<series>?detector=NAME) and every row predicted over HTTP
  (POST /predict/<series>?version=vN);
- a stream detector observes every row in order from the first, the way NAB
  runs detectors (POST /observe/<series>?detector=NAME, QUALITY_BATCH rows a
  request), the probationary period learned but not counted;
and scores the answers' anomaly_score / 100 with the NAB scorer
(nab_score.py). Prints a markdown table and writes bench/QUALITY.md.

Settings (environment):
  NAB_DIR               labelled data in NAB's layout (data/<category>/*.csv,
                        labels/combined_windows.json, config/profiles.json);
                        default ../shared/nab-dev next to the repository
  QUALITY_DETECTORS     default: every detector the server lists in /healthcheck
  QUALITY_BATCH         rows per observe request for stream detectors, default 500
  QUALITY_PARAMS_<name> query arguments appended to that detector's fit URL,
                        e.g. QUALITY_PARAMS_iforest="contamination=0.02"
  QUALITY_JSON          a file to write per-file raw scores to
  QUALITY_PORT          default 18095
  QUALITY_THREADS       parallel keep-alive connections, default 8
  QUALITY_WORKERS       nginx worker_processes, default 2
  NGINX_BIN             default /usr/sbin/nginx
"""

import datetime
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import nab_score as nab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DETECTORS = "three_sigma robust seasonal iforest"
SERIES_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Abort(Exception):
    """Stops the run with a message for the person who started it."""


def note(msg):
    print("quality: " + msg, file=sys.stderr, flush=True)


# ---- the server ----

class Server:
    def __init__(self, port, workers):
        self.port = port
        self.workers = workers
        self.work = os.path.join(REPO, "build", "quality")
        self.run = os.path.join(self.work, "run")
        self.store = os.path.join(self.work, "store")
        self.module = os.path.join(REPO, "build", "ngx_http_anomaly_module.so")
        self.nginx = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
        self.pid = None

    def start(self):
        if not os.path.exists(self.module):
            raise Abort("%s is not built; run make build (make quality does)" % self.module)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) == 0:
                raise Abort("port %d is in use; set QUALITY_PORT" % self.port)
        shutil.rmtree(self.store, ignore_errors=True)  # a fresh store per run
        os.makedirs(self.run, exist_ok=True)
        with open(os.path.join(HERE, "nginx.conf")) as f:
            conf = string.Template(f.read()).safe_substitute(
                MODULE=self.module, WORKERS=str(self.workers), RUN=self.run,
                STORE=self.store, PORT=str(self.port), ZONE="256m")
        conf_path = os.path.join(self.run, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        r = subprocess.run([self.nginx, "-p", self.run + "/", "-c", conf_path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Abort("nginx did not start:\n" + r.stderr.strip())
        with open(os.path.join(self.run, "nginx.pid")) as f:
            self.pid = int(f.read().strip())
        t0 = time.time()
        while True:
            try:
                state = self.healthcheck().get("store", {}).get("state")
            except (OSError, ValueError, http.client.HTTPException):
                state = None
            if state == "ready":
                break
            if time.time() - t0 > 120:
                raise Abort("nginx did not become ready in 120 s; see %s/error.log" % self.run)
            time.sleep(0.2)
        note("nginx %d ready on 127.0.0.1:%d (%d workers, store %s)"
             % (self.pid, self.port, self.workers, self.store))

    def healthcheck(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("GET", "/healthcheck")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise ValueError("healthcheck answered %d" % r.status)
            return json.loads(body)
        finally:
            c.close()

    def stop(self):
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                note("nginx %d stopped" % pid)
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGTERM)
        note("nginx %d did not stop on QUIT in 30 s; sent TERM" % pid)


# ---- the client ----

class Client:
    """One keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def post(self, path, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in range(3):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request("POST", path, data, headers)
                r = self.conn.getresponse()
                raw = r.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            try:
                answer = json.loads(raw) if raw else {}
            except ValueError:
                answer = {"detail": raw[:200].decode(errors="replace")}
            return r.status, answer, r.getheader("Retry-After")
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()


def series_id(detector, rel):
    stem = os.path.splitext(rel)[0].replace("/", ".")
    sid = re.sub(r"[^A-Za-z0-9._:-]", "_", "q-%s-%s" % (detector, stem))[:128]
    assert SERIES_ID.match(sid)
    return sid


def fit_body(timestamps, values, n_rows):
    """The first n_rows rows, keeping only strictly increasing timestamps (a
    repeated timestamp keeps its first row)."""
    ts, vs = [], []
    for t, v in zip(timestamps[:n_rows], values[:n_rows]):
        if ts and t <= ts[-1]:
            continue
        ts.append(t)
        vs.append(v)
    return {"timestamps": ts, "values": vs}


def run_file(client, detector, params, rel, timestamps, values):
    """Fits detector on the file's probationary period and predicts every row.

    Returns a dict with scores (anomaly_score / 100 per row), flags (the
    answer's anomaly per row), version, and refused (the 422 code) when the
    fit was refused."""
    n = len(timestamps)
    sid = series_id(detector, rel)
    url = "/fit/%s?detector=%s" % (sid, detector)
    if params:
        url += "&" + params.lstrip("&?")
    body = fit_body(timestamps, values, nab.probation_rows(n))
    for attempt in range(20):
        status, answer, retry = client.post(url, body)
        if status != 503:
            break
        time.sleep(float(retry or 1))
    if status == 422:
        return {"scores": [0.0] * n, "flags": [False] * n, "version": None,
                "refused": answer.get("code", "422"), "detail": answer.get("detail")}
    if status != 200:
        raise Abort("POST %s answered %d: %s" % (url, status, answer.get("detail", answer)))
    version = answer.get("version")
    if not version:
        raise Abort("POST %s answered no version: %s" % (url, answer))

    path = "/predict/%s?version=%s" % (sid, version)
    scores, flags = [0.0] * n, [False] * n
    for i in range(n):
        status, answer, _ = client.post(path, {"timestamp": timestamps[i], "value": values[i]})
        if status != 200:
            raise Abort("POST %s (row %d of %s) answered %d: %s"
                        % (path, i, rel, status, answer.get("detail", answer)))
        if "anomaly_score" not in answer or "detector" not in answer:
            raise Abort("the /predict answer has no %s (%s); make quality needs a module that "
                        "answers anomaly_score and detector (CONTRACT.md section 5)"
                        % ("anomaly_score" if "anomaly_score" not in answer else "detector",
                           json.dumps(answer)))
        if answer["detector"] != detector:
            raise Abort("fitted %s with ?detector=%s, but its prediction says detector %r"
                        % (sid, detector, answer["detector"]))
        scores[i] = float(answer["anomaly_score"]) / 100.0
        flags[i] = bool(answer["anomaly"])
    return {"scores": scores, "flags": flags, "version": version, "refused": None}


def run_stream_file(client, detector, params, rel, timestamps, values):
    """Observes every row of the file in order, from the first, into a new
    stream; every row is scored (a repeated timestamp is scored, not learned)."""
    n = len(timestamps)
    sid = series_id(detector, rel)
    url = "/observe/%s?detector=%s" % (sid, detector)
    if params:
        url += "&" + params.lstrip("&?")
    batch = int(os.environ.get("QUALITY_BATCH", "500"))
    scores, flags = [0.0] * n, [False] * n
    for start in range(0, n, batch):
        body = {"timestamps": timestamps[start:start + batch], "values": values[start:start + batch]}
        for attempt in range(20):
            status, answer, retry = client.post(url, body)
            if status != 503:
                break
            time.sleep(float(retry or 1))
        if status != 200:
            raise Abort("POST %s (rows %d.. of %s) answered %d: %s"
                        % (url, start, rel, status, answer.get("detail", answer)))
        if answer.get("detector") != detector or len(answer.get("anomaly_score", [])) != len(body["values"]):
            raise Abort("POST %s answered %s" % (url, json.dumps(answer)[:300]))
        for i, (s, a) in enumerate(zip(answer["anomaly_score"], answer["anomaly"])):
            scores[start + i] = float(s) / 100.0
            flags[start + i] = bool(a)
    return {"scores": scores, "flags": flags, "version": None, "refused": None}


def run_detector(port, threads, detector, params, corpus, stream=False):
    """Fits and predicts every file of the corpus with one detector, files in
    parallel over `threads` keep-alive connections."""
    jobs = queue.Queue()
    for k in range(len(corpus)):
        jobs.put(k)
    results = [None] * len(corpus)
    errors = []

    def worker():
        client = Client(port)
        try:
            while not errors:
                try:
                    k = jobs.get_nowait()
                except queue.Empty:
                    return
                rel, timestamps, values, _ = corpus[k]
                run = run_stream_file if stream else run_file
                results[k] = run(client, detector, params, rel, timestamps, values)
        except BaseException as e:  # reported by the main thread
            errors.append(e)
        finally:
            client.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        while t.is_alive():
            t.join(0.5)
    if errors:
        raise errors[0]
    return results


# ---- the report ----

def fmt(x, digits=1):
    return "-" if x is None else "%.*f" % (digits, x)


def fmt_threshold(t):
    return "never" if t == nab.NEVER else "%.6g" % t


def report(rows, profiles, nab_dir, command, predictions, wall, detectors_params):
    names = [p.name for p in profiles]
    lines = []
    head = ["detector"] + names + ["precision", "recall", "windows detected",
                                   "false alarm events", "files not fitted"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in rows:
        ev = r["events"]
        cells = [r["detector"]] + [fmt(r["nab"][n]["score"]) for n in names] + [
            fmt(ev["precision"], 3), fmt(ev["recall"], 3),
            "%d / %d" % (ev["detected"], ev["windows"]), str(ev["false_events"]),
            "%d / %d" % (len(r["refused"]), r["files"])]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)

    tlines = ["| detector | " + " | ".join("%s threshold (raw score)" % n for n in names) + " |",
              "|" + "---|" * (len(names) + 1)]
    for r in rows:
        tlines.append("| %s | " % r["detector"] + " | ".join(
            "%s (%.2f)" % (fmt_threshold(r["nab"][n]["threshold"]), r["nab"][n]["raw"])
            for n in names) + " |")
    thresholds = "\n".join(tlines)

    n_files = rows[0]["files"] if rows else 0
    n_windows = rows[0]["events"]["windows"] if rows else 0
    notes = []
    for r in rows:
        if r["refused"]:
            notes.append("- %s could not be fitted on %s: scored 0 on every row there."
                         % (r["detector"], ", ".join("%s (%s)" % (f, c) for f, c in r["refused"])))
        if detectors_params.get(r["detector"]):
            notes.append("- %s run with `%s`." % (r["detector"], detectors_params[r["detector"]]))
    definitions = """\
- NAB columns: the normalised NAB score, 100 * (raw - null) / (perfect - null), per scoring
  profile (config/profiles.json), at the one threshold on anomaly_score / 100 that gives the
  best total over all files (NAB's threshold optimisation; a row is a detection when its
  score >= the threshold). null: the detector that never fires; perfect: one detection at the
  first row of every window. Only the earliest detection in a window counts, weighted by
  NAB's scaled sigmoid of its position; detections outside windows cost the profile's
  fpWeight, less right after a window; a missed window costs fnWeight. The first
  min(floor(0.15 n), 750) rows of each file (the probationary period) are not scored: a
  batch detector is fitted on them; a stream detector (adaptive, rcf, ...) observes every
  row in order from the first, learning as it goes, as NAB runs detectors.
- precision, recall: event level, at the detector's own threshold (the answer's `anomaly`,
  true only past the boundary, where anomaly_score passes 70), on the scored rows. recall = windows with at least one flagged
  row / all windows; precision = detected windows / (detected windows + false alarm events),
  a false alarm event being a maximal run of consecutive flagged rows outside every window.
- For scale, published NAB v1.0 standard scores on the full 58-file corpus (not this
  subset): ARTime 74.9, Numenta HTM 70.5, CAD OSE 69.9, Random Cut Forest 51.7, Twitter
  ADVec 47.1, Windowed Gaussian 39.6, null 0."""
    summary = ("%d files, %d windows; %d rows predicted or observed over HTTP in %.1f s wall time (%.0f per second)."
               % (n_files, n_windows, predictions, wall, predictions / wall if wall else 0))
    body = "\n\n".join(x for x in [table, thresholds, "\n".join(notes), definitions, summary] if x)
    print(body)
    out = os.path.join(REPO, "bench", "QUALITY.md")
    with open(out, "w") as f:
        f.write("# Detection quality\n\n")
        f.write("Measured by `%s` on %s UTC, on `%s`.\n\n"
                % (command, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), nab_dir))
        f.write(body + "\n")
    note("wrote %s" % os.path.relpath(out, os.getcwd()))


def main():
    nab_dir = os.path.abspath(os.environ.get("NAB_DIR") or
                              os.path.join(os.path.dirname(REPO), "shared", "nab-dev"))
    if not os.path.exists(os.path.join(nab_dir, "labels", "combined_windows.json")):
        raise Abort("no labels/combined_windows.json under %s; set NAB_DIR to a folder in "
                    "NAB's layout (data/<category>/*.csv, labels/combined_windows.json)" % nab_dir)
    asked = (os.environ.get("QUALITY_DETECTORS") or "").split()
    port = int(os.environ.get("QUALITY_PORT", "18095"))
    threads = int(os.environ.get("QUALITY_THREADS", "8"))
    workers = int(os.environ.get("QUALITY_WORKERS", "2"))
    profiles_path = os.path.join(nab_dir, "config", "profiles.json")
    profiles = (nab.load_profiles(profiles_path) if os.path.exists(profiles_path)
                else nab.DEFAULT_PROFILES)

    corpus = nab.read_corpus(nab_dir)
    labelled = [nab.LabelledFile(rel, ts, windows) for rel, ts, _, windows in corpus]
    note("%d files, %d rows, %d windows from %s"
         % (len(corpus), sum(len(c[1]) for c in corpus),
            sum(len(c[3]) for c in corpus), nab_dir))

    command = "make quality"
    for k in ["NAB_DIR", "QUALITY_DETECTORS", "QUALITY_BATCH"] + \
            [k for k in sorted(os.environ) if k.startswith("QUALITY_PARAMS_")]:
        if os.environ.get(k):
            command = "%s=%s %s" % (k, json.dumps(os.environ[k]) if " " in os.environ[k]
                                    else os.environ[k], command)

    server = Server(port, workers)
    rows, dump = [], {}
    predictions = 0
    t0 = time.time()
    try:
        server.start()
        offered = {d["name"]: d.get("kind", "batch") for d in server.healthcheck().get("detectors", [])}
        detectors = asked or [d for d in offered] or DEFAULT_DETECTORS.split()
        params = {d: os.environ.get("QUALITY_PARAMS_" + d, "") for d in detectors}
        for d in detectors:
            t = time.time()
            results = run_detector(port, threads, d, params[d], corpus, stream=offered.get(d) == "stream")
            refused = [(corpus[k][0], r["refused"]) for k, r in enumerate(results) if r["refused"]]
            made = sum(len(corpus[k][1]) for k, r in enumerate(results) if not r["refused"])
            predictions += made
            files = [(labelled[k], r["scores"]) for k, r in enumerate(results)]
            scores = nab.nab_scores(files, profiles)
            events = nab.event_metrics([(labelled[k], r["flags"]) for k, r in enumerate(results)])
            rows.append({"detector": d, "nab": scores, "events": events,
                         "refused": refused, "files": len(corpus)})
            note("%s: %d predictions in %.1f s; standard %.1f"
                 % (d, made, time.time() - t, scores[profiles[0].name]["score"]))
            dump[d] = {
                "params": params[d],
                "profiles": {n: {"threshold": None if v["threshold"] == nab.NEVER else v["threshold"],
                                 "raw": v["raw"], "null": v["null"], "perfect": v["perfect"],
                                 "score": v["score"]} for n, v in scores.items()},
                "events": events,
                "files": {corpus[k][0]: {
                    "version": r["version"], "refused": r["refused"],
                    "raw": {n: scores[n]["per_file"][corpus[k][0]][0] for n in scores},
                    "counts": {n: scores[n]["per_file"][corpus[k][0]][1] for n in scores},
                    "events": nab.event_metrics([(labelled[k], r["flags"])]),
                } for k, r in enumerate(results)},
            }
    finally:
        server.stop()
    wall = time.time() - t0
    report(rows, profiles, nab_dir, command, predictions, wall, params)
    if os.environ.get("QUALITY_JSON"):
        with open(os.environ["QUALITY_JSON"], "w") as f:
            json.dump(dump, f, indent=1)
        note("wrote %s" % os.environ["QUALITY_JSON"])


def _terminate(signum, _frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        main()
    except Abort as e:
        note(str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
