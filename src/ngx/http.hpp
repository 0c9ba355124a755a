// The nginx layer's shared parts: the module's configuration, the state of a
// request, the process state and the helpers more than one endpoint family
// uses. One .cpp a family (lua-nginx-module's way):
//   http_common.cpp  answering, errors, counting, series ids, the wait on the
//                    owner that fit and plot share, nginx's own errors as JSON
//   fit.cpp          /fit: the body, the thread pool work, budgets, trimming
//   predict.cpp      /predict
//   observe.cpp      /observe: streams
//   score.cpp        /score: every point of a posted series at once
//   anomalies.cpp    the anomaly history, /anomalies, /anomalies/summary
//   alert.cpp        alerts: background subrequests to anomaly_alert's location
//   plot.cpp         /plot
//   catalogue.cpp    /series, /series/{id}, /dashboard
//   lifecycle.cpp    DELETE /series/{id}, /export, /import
//   health.cpp       /healthcheck, /metrics and the figures they share
//   variables.cpp    $anomaly_* variables
//   conf.cpp         directives, configuration, the zone and the store
//   ngx_http_anomaly_module.cpp  the module itself and its process hooks
#pragma once

#include "ngx/ngx.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/alert.hpp"
#include "core/detector.hpp"
#include "core/error.hpp"
#include "core/histogram.hpp"
#include "core/history.hpp"
#include "core/metrics.hpp"
#include "core/model.hpp"
#include "core/request.hpp"
#include "core/stream.hpp"
#include "ngx/zone.hpp"

extern ngx_module_t ngx_http_anomaly_module;

namespace anomaly {

enum class Endpoint : ngx_uint_t {
    none = 0, fit, predict, healthcheck, metrics, error, plot, series, versions, dashboard, observe, score,
    anomalies, anomalies_summary, exporting, importing
};

struct MainConf {
    ngx_shm_zone_t *shm_zone;
    ngx_str_t store;
    ngx_str_t thread_pool_name;
    ngx_thread_pool_t *thread_pool;
    ngx_flag_t endpoints_used;
    size_t fit_memory;                    // anomaly_fit_memory: body bytes of fits per worker
    ngx_msec_t checkpoint;                // anomaly_checkpoint: streams written at most this often
    ngx_uint_t history;                   // anomaly_history: events the history holds; unset: the default
    ngx_uint_t keep_versions;             // anomaly_keep_versions: newest versions kept a series, 0 all
};

struct LocConf {
    ngx_uint_t endpoint;
    ngx_http_complex_value_t *series_id;  // anomaly_fit $var; else the URI tail
    double sigma;                         // anomaly_sigma
    ngx_uint_t tail;                      // anomaly_tail
    size_t min_points;                    // anomaly_min_points
    size_t max_points;                    // anomaly_max_points
    ngx_msec_t fit_timeout;               // anomaly_fit_timeout
    // anomaly_detector and the per-detector directives: what a fit here
    // trains when its query says nothing else.
    ngx_uint_t detector;                  // DetectorKind, NGX_CONF_UNSET_UINT
    ngx_uint_t season;                    // anomaly_seasonal_season
    ngx_uint_t trees;                     // anomaly_iforest_trees
    ngx_uint_t sample;                    // anomaly_iforest_sample
    double contamination;                 // anomaly_iforest_contamination
    // anomaly_stream_detector and the stream directives: what a series'
    // first observe here creates when its query says nothing else (0: the
    // detector's default).
    StreamParams stream;
    double threshold;                     // anomaly_threshold: an observed point is anomalous from this score
    ngx_str_t alert;                      // anomaly_alert: the location alerts go to, empty for none
    ngx_msec_t alert_interval;            // anomaly_alert_interval: one alert per series per interval
    ngx_flag_t delete_series;             // anomaly_delete: DELETE /series/{id} allowed here
};

struct FitWork;
struct Alert;

// Per request: what the variables show, and where a fit or a plot waits.
struct RequestCtx {
    std::uint32_t version = 0;        // $anomaly_model_version
    int result = -1;                  // $anomaly_result: -1 none, 0 false, 1 true
    double score = 0;                 // $anomaly_score
    double anomaly_score = 0;         // $anomaly_anomaly_score (0-100)
    DetectorKind detector = DetectorKind::three_sigma;  // $anomaly_detector, with result

    ngx_http_request_t *request = nullptr;
    ngx_str_t series_id{};
    std::uint64_t started_ns = 0;
    ngx_event_t *load_wait = nullptr; // the timer of run_later
    void (*rerun)(ngx_http_request_t *) = nullptr;  // what run_later runs
    std::uint64_t body_read_ns = 0;
    bool plot = false;
    // A delete or an import waiting for the owner: answers its outcome
    // (the job's data is the body) when the owner is done.
    ngx_int_t (*owner_answer)(ngx_http_request_t *r, RequestCtx *ctx, const Job &outcome) = nullptr;
    bool is_fit() const { return !plot && owner_answer == nullptr; }

    // A fit or a plot waits in one place at a time. nginx may end the
    // request anywhere (a closed connection, worker_shutdown_timeout): a
    // pool cleanup (request_ended) then takes it out of whatever it waits in.
    enum class Wait : std::uint8_t {
        none,
        thread_slot,  // in fits_for_threads: every fit thread slot is busy
        task,         // a pool task works for it; r->main->blocked holds the request
        owner,        // in owner_waits: the store's owner commits it or reads for it
    };
    Wait wait = Wait::none;
    ngx_queue_t link{};
    FitWork *queued_fit = nullptr;    // Wait::thread_slot
    Job *job = nullptr;               // Wait::owner
    ngx_msec_t deadline = 0;          // Wait::owner: answered 503 store_timeout after
    std::uint64_t spool_seq = 0;
    bool in_memory = false;
    std::uint64_t budget = 0;         // body bytes held in this worker's fit budget
    bool in_progress = false;         // counted in fits_in_progress
    const ModelHeader *model = nullptr;  // the image of the version a plot draws, in the zone
    Alert *alert = nullptr;           // an alert subrequest: the event its $anomaly_alert_* show
};

// A fit being parsed and validated in a pool thread. It owns its task, so
// that nothing the thread touches lives in the request's pool but the body,
// which r->main->blocked keeps until the task is done.
struct FitWork {
    struct Piece {
        const u_char *data;   // in memory, or nullptr when in the file
        ngx_fd_t fd;
        off_t offset;
        size_t length;
    };
    ngx_thread_task_t task{};
    ngx_http_request_t *request = nullptr;
    std::vector<Piece> pieces;
    size_t length = 0;
    FitLimits limits;
    DetectorParams params;            // the location's, then the query's (the body's are read with it)
    std::string args;                 // the query string, for the parameters the body may override
    std::uint64_t spool_seq = 0;
    bool in_memory = false;           // handed over in memory (see hand_over)
    Error error;
    std::string log_detail;           // what the error log says of a 5xx
    std::uint64_t points = 0;
};

// The body a pool task works on, in one buffer with kJsonPadding zeroed
// bytes after it: copied from memory, read (pread) from nginx's temp file.
// Throws when the file cannot be read. Called in pool threads only.
std::string gather_body(const std::vector<FitWork::Piece> &pieces, std::size_t length);
// Where the request body nginx read lies: a piece per buffer, in memory or
// in its temp file. Returns the total length; *in_file says whether any
// piece is in the file.
std::size_t body_pieces(const ngx_http_request_body_t *rb, std::vector<FitWork::Piece> *pieces, bool *in_file);

// Posts task to the pool to work for r: thread runs there, done on the event
// loop afterwards, both given data; r->main->blocked holds the request
// until done runs (task_done_for). False when the pool's queue is full.
bool post_task(ngx_http_request_t *r, ngx_thread_task_t *task, void *data, void (*thread)(void *, ngx_log_t *),
               ngx_event_handler_pt done);

// Runs run(r) again after delay, on the event loop; false when it cannot be
// scheduled. The timer goes with the request.
bool run_later(ngx_http_request_t *r, RequestCtx *ctx, ngx_msec_t delay, void (*run)(ngx_http_request_t *));
// A request that arrives while the zone is being filled (a start, or a new
// nginx generation in a binary upgrade) waits up to this long for it.
constexpr ngx_msec_t kLoadWait = 3000;
constexpr ngx_msec_t kLoadPoll = 10;
// True when the zone is still being filled and the request, read kLoadWait
// ago at most, will run again (run) once it may be.
bool wait_for_load(ngx_http_request_t *r, RequestCtx *ctx, void (*run)(ngx_http_request_t *));

// ---- process state (http_common.cpp, fit.cpp) ----
extern ngx_queue_t owner_waits;          // fits and plots waiting on the owner
extern ngx_queue_t fits_for_threads;     // fits waiting for a thread slot
extern ngx_uint_t fit_threads_max;       // the CPUs of the machine: more parse no faster
extern std::uint64_t fit_budget_used;    // body bytes of the fits this worker holds
extern ngx_uint_t fits_in_progress;      // parsing or waiting: keeps an exiting worker alive
extern ngx_event_t fit_timer;
extern Zone *process_zone;
extern ngx_thread_pool_t *process_pool;

// ---- conf.cpp ----

// What a fit at this location trains when its query says nothing else.
DetectorParams location_params(const LocConf *lcf);

// ---- http_common.cpp ----

std::uint64_t monotonic_ns();
inline std::string_view view(const ngx_str_t &s) { return std::string_view(reinterpret_cast<char *>(s.data), s.len); }
MainConf *main_conf(ngx_http_request_t *r);
LocConf *loc_conf(ngx_http_request_t *r);
Zone *zone_of(ngx_http_request_t *r);
RequestCtx *get_ctx(ngx_http_request_t *r);
RequestCtx *create_ctx(ngx_http_request_t *r);

ngx_int_t send_body(ngx_http_request_t *r, ngx_uint_t status, const char *data, size_t len,
                    const char *content_type = "application/json");
ngx_int_t send_error(ngx_http_request_t *r, const Error &error);
ngx_int_t send_error(ngx_http_request_t *r, int status, const char *code, const char *detail);
ngx_int_t reject(ngx_http_request_t *r, int status, const char *code, const char *detail);
ngx_int_t not_loaded_error(ngx_http_request_t *r);
// The answer to a lookup that found nothing: 503 store_loading, or 404
// series_not_found or version_not_found.
ngx_int_t lookup_error(ngx_http_request_t *r, Lookup lookup);
ngx_int_t internal_error(ngx_http_request_t *r, const char *what) noexcept;
ngx_int_t send_busy(ngx_http_request_t *r, const char *detail, bool discard_body);

void record(EndpointStats &stats, std::uint64_t started_ns, ngx_uint_t status);
ngx_int_t counted(ngx_http_request_t *r, EndpointStats &stats, ngx_int_t rc);
void count_in_flight(ngx_http_request_t *r, EndpointStats &stats);

bool series_id_of(ngx_http_request_t *r, ngx_str_t *id);
bool valid_series_id(const ngx_str_t &id);
extern const char *kBadSeriesId;

// Waiting: pool tasks and the owner, for fits and plots alike.
void fit_timer_arm();
void stop_waiting(RequestCtx *ctx);
bool watch_end(ngx_http_request_t *r, RequestCtx *ctx);
void wait_for_owner(ngx_http_request_t *r, RequestCtx *ctx, Job *job);
void fit_finish(ngx_http_request_t *r, RequestCtx *ctx, ngx_int_t rc);
bool task_done_for(ngx_http_request_t *r, RequestCtx *ctx);
void fits_check() noexcept;
void fit_timer_handler(ngx_event_t *) noexcept;

// ---- fit.cpp: a fit's progress and the trim timer (set up by init_process) ----

extern ngx_event_t trim_timer;
extern ngx_thread_task_t trim_task;
void trim_thread(void *, ngx_log_t *);
void trim_done(ngx_event_t *) noexcept;
void trim_timer_handler(ngx_event_t *) noexcept;
void leave_progress(RequestCtx *ctx);

// ---- what /predict and /observe answered (CONTRACT section 8) ----

// One anomalous point of an answer.
struct ScoredPoint {
    std::int64_t timestamp;  // Unix seconds
    double value;
    double anomaly_score;    // 0-100
    double score;            // the detector's own number
};

// An answer of /predict or /observe, for the anomaly history and the alerts.
struct ScoredAnswer {
    std::string_view series_id;
    DetectorKind detector;
    std::uint32_t version;         // the version judged with; 0 for a stream
    std::uint64_t points;          // points scored
    const ScoredPoint *anomalies;  // the anomalous ones, in order
    std::size_t anomaly_count;
    SeriesNode *node = nullptr;    // the series' node in the zone, when the caller has it at hand
};

// Every answered /predict and /observe passes here once, on the event loop,
// before its answer is sent: the history records its anomalies
// (anomalies.cpp), an alert may go out (alert.cpp).
void answered(ngx_http_request_t *r, const ScoredAnswer &answer) noexcept;
void history_note(ngx_http_request_t *r, const ScoredAnswer &answer) noexcept;  // anomalies.cpp
void alert_note(ngx_http_request_t *r, const ScoredAnswer &answer) noexcept;    // alert.cpp
// The history's counts and state, for /anomalies/summary, /healthcheck and
// /metrics (anomalies.cpp); series left empty.
HistorySummary history_figures(Zone *zone, const MainConf *mcf);

// Puts the alert location's error_log in force for its deliveries.
ngx_int_t alert_postconfiguration(ngx_conf_t *cf) noexcept;

// An alert on its way: what its subrequest's $anomaly_alert_* variables show.
struct Alert {
    std::string body;                 // $anomaly_alert_body
    std::string series_id;            // what event.series_id views (an Alert never moves)
    AlertEvent event;                 // the other $anomaly_alert_* variables
    ngx_str_t location{};             // anomaly_alert's, for the log
    bool ended = false;               // its outcome is counted
};

// ---- plot.cpp ----

void draw_plot(ngx_http_request_t *r, RequestCtx *ctx, std::string data) noexcept;

// ---- health.cpp: the figures /healthcheck, /metrics and the variables show ----

struct EndpointFigures {
    LatencySummary latency;
    std::uint64_t statuses[kStatusSlots] = {};
    std::uint64_t last_10s = 0;
    std::uint64_t last_60s = 0;
    std::int64_t in_flight = 0;

    void add(const EndpointStats &s, std::int64_t now) {
        latency.add(s.latency);
        for (std::size_t i = 0; i < kStatusSlots; i++) statuses[i] += __atomic_load_n(&s.statuses[i], __ATOMIC_RELAXED);
        last_10s += s.rate.total(now, 10);
        last_60s += s.rate.total(now, 60);
        in_flight += __atomic_load_n(&s.in_flight, __ATOMIC_RELAXED);
    }
};

struct Figures {
    EndpointFigures predict;
    EndpointFigures fit;
    EndpointFigures observe;
    EndpointFigures score;
    std::uint64_t points_observed = 0;
    std::uint64_t anomalies = 0;
    std::uint64_t by_detector[kDetectorSlots] = {};  // predictions answered
};

const Figures &figures(Zone *zone);

// ---- the endpoints' handlers ----

ngx_int_t fit_handler(ngx_http_request_t *r) noexcept;       // fit.cpp
ngx_int_t predict_handler(ngx_http_request_t *r) noexcept;   // predict.cpp
ngx_int_t observe_handler(ngx_http_request_t *r) noexcept;   // observe.cpp
ngx_int_t plot_handler(ngx_http_request_t *r) noexcept;      // plot.cpp
ngx_int_t series_handler(ngx_http_request_t *r) noexcept;    // catalogue.cpp
ngx_int_t versions_handler(ngx_http_request_t *r) noexcept;
ngx_int_t dashboard_handler(ngx_http_request_t *r) noexcept;
ngx_int_t healthcheck_handler(ngx_http_request_t *r) noexcept;  // health.cpp
ngx_int_t metrics_handler(ngx_http_request_t *r) noexcept;
ngx_int_t error_handler(ngx_http_request_t *r) noexcept;     // http_common.cpp
ngx_int_t score_handler(ngx_http_request_t *r) noexcept;     // score.cpp
ngx_int_t anomalies_handler(ngx_http_request_t *r) noexcept; // anomalies.cpp
ngx_int_t anomalies_summary_handler(ngx_http_request_t *r) noexcept;
ngx_int_t delete_series(ngx_http_request_t *r) noexcept;    // lifecycle.cpp
ngx_int_t export_handler(ngx_http_request_t *r) noexcept;
ngx_int_t import_handler(ngx_http_request_t *r) noexcept;
// An owner's answer of a delete or an import: its status and JSON body.
ngx_int_t send_owner_answer(ngx_http_request_t *r, RequestCtx *ctx, const Job &outcome);

// ---- variables.cpp, conf.cpp: what the module definition ties together ----

ngx_int_t add_variables(ngx_conf_t *cf) noexcept;
void *create_main_conf(ngx_conf_t *cf) noexcept;
char *init_main_conf(ngx_conf_t *cf, void *conf) noexcept;
void *create_loc_conf(ngx_conf_t *cf) noexcept;
char *merge_loc_conf(ngx_conf_t *cf, void *parent, void *child) noexcept;
extern ngx_command_t commands[];

}  // namespace anomaly
