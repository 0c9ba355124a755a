// The directives: the configuration they fill, the shared zone and the store
// directory it names, and the handler each endpoint directive sets.

#include "ngx/http.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <type_traits>

#include "core/detector.hpp"
#include "core/model.hpp"
#include "core/parameters.hpp"
#include "ngx/store_dir.hpp"

namespace anomaly {
namespace {

constexpr ngx_msec_t kDefaultFitTimeout = 30000;  // anomaly_fit_timeout
constexpr size_t kDefaultFitMemory = 128 * 1024 * 1024;  // anomaly_fit_memory
constexpr double kUnsetSigma = -1;
constexpr ngx_msec_t kDefaultCheckpoint = 5000;  // anomaly_checkpoint
constexpr double kDefaultThreshold = 70;         // anomaly_threshold (CONTRACT section 6)
constexpr ngx_msec_t kDefaultAlertInterval = 60000;  // anomaly_alert_interval (CONTRACT section 8)
// A StreamParams field no directive set: 0 means "the detector's default" in
// a query too, so an unset field is told apart by this marker instead.
constexpr std::uint32_t kUnsetWhole = 0xfffffffeu;
constexpr double kUnsetShare = -1;

}  // namespace

// ---- configuration ----

void *create_main_conf(ngx_conf_t *cf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(ngx_pcalloc(cf->pool, sizeof(MainConf)));
    if (mcf == nullptr) return nullptr;
    mcf->endpoints_used = NGX_CONF_UNSET;
    mcf->fit_memory = NGX_CONF_UNSET_SIZE;
    mcf->checkpoint = NGX_CONF_UNSET_MSEC;
    mcf->history = NGX_CONF_UNSET_UINT;
    mcf->keep_versions = NGX_CONF_UNSET_UINT;
    return mcf;
}

char *init_main_conf(ngx_conf_t *cf, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->thread_pool_name.len == 0) {
        ngx_str_set(&mcf->thread_pool_name, "default");
    }
    ngx_conf_init_size_value(mcf->fit_memory, kDefaultFitMemory);
    ngx_conf_init_msec_value(mcf->checkpoint, kDefaultCheckpoint);
    ngx_conf_init_uint_value(mcf->keep_versions, 0);
    if (mcf->endpoints_used == 1 && (mcf->shm_zone == nullptr || mcf->store.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "anomaly endpoints need \"anomaly_zone\" and \"anomaly_store\" in the http block");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (mcf->shm_zone != nullptr && mcf->store.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_zone\" needs \"anomaly_store\"");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (mcf->shm_zone != nullptr) {
        mcf->thread_pool = ngx_thread_pool_add(cf, &mcf->thread_pool_name);
        if (mcf->thread_pool == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

void *create_loc_conf(ngx_conf_t *cf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(ngx_pcalloc(cf->pool, sizeof(LocConf)));
    if (lcf == nullptr) return nullptr;
    lcf->sigma = kUnsetSigma;
    lcf->tail = NGX_CONF_UNSET_UINT;
    lcf->min_points = NGX_CONF_UNSET_SIZE;
    lcf->max_points = NGX_CONF_UNSET_SIZE;
    lcf->fit_timeout = NGX_CONF_UNSET_MSEC;
    lcf->detector = NGX_CONF_UNSET_UINT;
    lcf->season = NGX_CONF_UNSET_UINT;
    lcf->trees = NGX_CONF_UNSET_UINT;
    lcf->sample = NGX_CONF_UNSET_UINT;
    lcf->contamination = kUnsetSigma;
    lcf->stream.kind = static_cast<DetectorKind>(0);
    lcf->stream.warmup = lcf->stream.recent = lcf->stream.trees = lcf->stream.sample = lcf->stream.shingle =
        lcf->stream.hold = kUnsetWhole;
    lcf->stream.decay = lcf->stream.alpha = kUnsetShare;
    lcf->stream.hourly = 0xff;
    lcf->threshold = kUnsetSigma;
    lcf->alert_interval = NGX_CONF_UNSET_MSEC;
    lcf->delete_series = NGX_CONF_UNSET;
    // lcf->alert: {0, nullptr} unset, {0, ""} anomaly_alert off
    return lcf;
}

DetectorParams location_params(const LocConf *lcf) {
    DetectorParams p;
    p.kind = static_cast<DetectorKind>(lcf->detector);
    p.season = static_cast<Season>(lcf->season);
    p.trees = static_cast<std::uint32_t>(lcf->trees);
    p.sample = static_cast<std::uint32_t>(lcf->sample);
    p.contamination = lcf->contamination;
    return p;
}

namespace {
ngx_http_handler_pt handler_for(Endpoint endpoint);
}  // namespace

char *merge_loc_conf(ngx_conf_t *cf, void *parent, void *child) noexcept {
    LocConf *prev = static_cast<LocConf *>(parent);
    LocConf *conf = static_cast<LocConf *>(child);
    // A limit_except block is a location of its own that nginx switches a
    // request to (for the methods it limits): it answers as its location
    // does, as ngx_http_proxy_module's merge makes it.
    ngx_http_core_loc_conf_t *clcf =
        static_cast<ngx_http_core_loc_conf_t *>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->lmt_excpt && conf->endpoint == 0 && prev->endpoint != 0) {
        conf->endpoint = prev->endpoint;
        conf->series_id = prev->series_id;
        if (clcf->handler == nullptr) clcf->handler = handler_for(static_cast<Endpoint>(conf->endpoint));
    }
    if (conf->sigma == kUnsetSigma) conf->sigma = prev->sigma == kUnsetSigma ? 3.0 : prev->sigma;
    ngx_conf_merge_uint_value(conf->tail, prev->tail, static_cast<ngx_uint_t>(Tail::both));
    ngx_conf_merge_size_value(conf->min_points, prev->min_points, 10);
    ngx_conf_merge_size_value(conf->max_points, prev->max_points, 1000000);
    ngx_conf_merge_msec_value(conf->fit_timeout, prev->fit_timeout, kDefaultFitTimeout);
    const DetectorParams defaults;
    ngx_conf_merge_uint_value(conf->detector, prev->detector, static_cast<ngx_uint_t>(defaults.kind));
    ngx_conf_merge_uint_value(conf->season, prev->season, static_cast<ngx_uint_t>(defaults.season));
    ngx_conf_merge_uint_value(conf->trees, prev->trees, defaults.trees);
    ngx_conf_merge_uint_value(conf->sample, prev->sample, defaults.sample);
    if (conf->contamination == kUnsetSigma)
        conf->contamination = prev->contamination == kUnsetSigma ? defaults.contamination : prev->contamination;
    // The stream parameters, each inherited unless set here.
    StreamParams &sp = conf->stream;
    const StreamParams &pp = prev->stream;
    if (sp.kind == static_cast<DetectorKind>(0)) sp.kind = pp.kind;
    for (auto field : {&StreamParams::warmup, &StreamParams::recent, &StreamParams::trees, &StreamParams::sample,
                       &StreamParams::shingle, &StreamParams::hold})
        if (sp.*field == kUnsetWhole) sp.*field = pp.*field;
    if (sp.decay == kUnsetShare) sp.decay = pp.decay;
    if (sp.alpha == kUnsetShare) sp.alpha = pp.alpha;
    if (sp.hourly == 0xff) sp.hourly = pp.hourly;
    if (conf->threshold == kUnsetSigma) conf->threshold = prev->threshold == kUnsetSigma ? kDefaultThreshold : prev->threshold;
    if (conf->alert.data == nullptr) conf->alert = prev->alert;
    ngx_conf_merge_msec_value(conf->alert_interval, prev->alert_interval, kDefaultAlertInterval);
    ngx_conf_merge_value(conf->delete_series, prev->delete_series, 0);
    {
        // What is still unset takes the detector's default (0), and the
        // whole set is checked as a first observe's would be.
        // pattern: the best of make quality, and lighter and faster than rcf.
        if (sp.kind == static_cast<DetectorKind>(0)) sp.kind = DetectorKind::pattern;
        for (auto field : {&StreamParams::warmup, &StreamParams::recent, &StreamParams::trees, &StreamParams::sample,
                           &StreamParams::shingle, &StreamParams::hold})
            if (sp.*field == kUnsetWhole) sp.*field = 0;
        if (sp.decay == kUnsetShare) sp.decay = 0;
        if (sp.alpha == kUnsetShare) sp.alpha = 0;
        if (sp.hourly == 0xff) sp.hourly = 0;
        // Each detector's parameters are checked as a first observe with
        // ?detector=<it> would check them: a location whose default is
        // pattern may still create rcf streams.
        for (DetectorKind kind : {sp.kind, DetectorKind::rcf, DetectorKind::adaptive, DetectorKind::pattern}) {
            StreamParams check = sp;
            check.kind = kind;
            Error e = resolve_stream_params(&check);
            if (e) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "the stream directives: %s", e.detail.c_str());
                return static_cast<char *>(NGX_CONF_ERROR);
            }
        }
    }
    if (conf->min_points > conf->max_points) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_min_points\" %uz is larger than \"anomaly_max_points\" %uz",
                           conf->min_points, conf->max_points);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

namespace {

// The zone's init callback. nginx calls it after creating its own paths and
// before it commits a new configuration, so the store directory is prepared
// here: a refusal stops a start and leaves a reload on the old configuration
// (a failing init_module would make the master exit). nginx -t and
// nginx -s also get here, and change nothing on disk.
ngx_int_t init_zone(ngx_shm_zone_t *shm_zone, void *data) noexcept {
    try {
        Zone *zone = Zone::from(shm_zone);
        ngx_cycle_t *cycle = zone->cycle();
        auto *mcf = static_cast<MainConf *>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_anomaly_module));
        if (mcf->history == NGX_CONF_UNSET_UINT) zone->want_history(kDefaultHistory, false);
        else zone->want_history(mcf->history, true);
        if (!ngx_test_config && ngx_process != NGX_PROCESS_SIGNALLER) {
            auto *ccf = reinterpret_cast<ngx_core_conf_t *>(ngx_get_conf(cycle->conf_ctx, ngx_core_module));
            std::string dir(reinterpret_cast<char *>(mcf->store.data), mcf->store.len);
            if (prepare_store_dir(shm_zone->shm.log, dir, ccf->user) != NGX_OK) return NGX_ERROR;
        }
        return Zone::init(shm_zone, data);
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0, "anomaly_zone \"%V\": %s", &shm_zone->shm.name,
                      e.what());
        return NGX_ERROR;
    }
}

char *set_zone(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->shm_zone != nullptr) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    u_char *colon = static_cast<u_char *>(ngx_strlchr(value[1].data, value[1].data + value[1].len, ':'));
    if (colon == nullptr || colon == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_zone\" takes name:size, e.g. models:64m, not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_str_t name{static_cast<size_t>(colon - value[1].data), value[1].data};
    ngx_str_t size_text{static_cast<size_t>(value[1].data + value[1].len - colon - 1), colon + 1};
    ssize_t size = ngx_parse_size(&size_text);
    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid anomaly_zone size \"%V\"", &size_text);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    const ssize_t minimum = static_cast<ssize_t>(8 * ngx_pagesize + sizeof(Shared) + 1024 * sizeof(void *));
    if (size < minimum) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "anomaly_zone \"%V\" is too small, it needs at least %uzk",
                           &name, static_cast<size_t>(minimum / 1024 + 1));
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    mcf->shm_zone = ngx_shared_memory_add(cf, &name, static_cast<size_t>(size), &ngx_http_anomaly_module);
    if (mcf->shm_zone == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
    if (mcf->shm_zone->data != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "anomaly_zone \"%V\" is already bound", &name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    void *mem = ngx_pcalloc(cf->pool, sizeof(Zone));
    if (mem == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
    static_assert(std::is_trivially_destructible<Zone>::value, "lives in the conf pool");
    mcf->shm_zone->data = new (mem) Zone(cf->cycle);
    mcf->shm_zone->init = init_zone;
    mcf->shm_zone->noreuse = 0;
    return NGX_CONF_OK;
}

char *set_store(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->store.len != 0) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    mcf->store = value[1];
    if (ngx_conf_full_name(cf->cycle, &mcf->store, 0) != NGX_OK) return static_cast<char *>(NGX_CONF_ERROR);
    while (mcf->store.len > 1 && mcf->store.data[mcf->store.len - 1] == '/') mcf->store.len--;
    return NGX_CONF_OK;
}

ngx_http_handler_pt handler_for(Endpoint endpoint) {
    switch (endpoint) {
    case Endpoint::fit: return fit_handler;
    case Endpoint::predict: return predict_handler;
    case Endpoint::observe: return observe_handler;
    case Endpoint::metrics: return metrics_handler;
    case Endpoint::error: return error_handler;
    case Endpoint::plot: return plot_handler;
    case Endpoint::series: return series_handler;
    case Endpoint::versions: return versions_handler;
    case Endpoint::dashboard: return dashboard_handler;
    case Endpoint::score: return score_handler;
    case Endpoint::anomalies: return anomalies_handler;
    case Endpoint::anomalies_summary: return anomalies_summary_handler;
    case Endpoint::exporting: return export_handler;
    case Endpoint::importing: return import_handler;
    default: return healthcheck_handler;
    }
}

char *set_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(conf);
    if (lcf->endpoint != 0) return const_cast<char *>("is duplicate");
    lcf->endpoint = reinterpret_cast<uintptr_t>(cmd->post);
    ngx_http_core_loc_conf_t *clcf =
        static_cast<ngx_http_core_loc_conf_t *>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = handler_for(static_cast<Endpoint>(lcf->endpoint));
    if (cf->args->nelts == 2) {
        ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
        lcf->series_id = static_cast<ngx_http_complex_value_t *>(ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t)));
        if (lcf->series_id == nullptr) return static_cast<char *>(NGX_CONF_ERROR);
        ngx_http_compile_complex_value_t ccv{};
        ccv.cf = cf;
        ccv.value = &value[1];
        ccv.complex_value = lcf->series_id;
        if (ngx_http_compile_complex_value(&ccv) != NGX_OK) return static_cast<char *>(NGX_CONF_ERROR);
    }
    MainConf *mcf = static_cast<MainConf *>(ngx_http_conf_get_module_main_conf(cf, ngx_http_anomaly_module));
    mcf->endpoints_used = 1;
    return NGX_CONF_OK;
}

char *set_sigma(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(conf);
    if (lcf->sigma != kUnsetSigma) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    std::string text(reinterpret_cast<char *>(value[1].data), value[1].len);
    char *end = nullptr;
    errno = 0;
    double sigma = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(sigma) || sigma <= 0 || sigma > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_sigma\" must be a number above 0 and at most 1000, such as 3 or 2.5, not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    lcf->sigma = sigma;
    return NGX_CONF_OK;
}

char *set_points(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_size_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    size_t n = *reinterpret_cast<size_t *>(static_cast<char *>(conf) + cmd->offset);
    if (n < 2 || n > 100000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" must be between 2 and 100000000", &cmd->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

char *set_fit_memory(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_size_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    if (static_cast<MainConf *>(conf)->fit_memory < 1024 * 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_fit_memory\" must be at least 1m, such as 128m");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

char *set_fit_timeout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_msec_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    const ngx_msec_t t = static_cast<LocConf *>(conf)->fit_timeout;
    if (t < 100 || t > 3600000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_fit_timeout\" must be between 100ms and 1h, such as 30s");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

// anomaly_detector and the per-detector directives: the value is checked as
// the same parameter in a fit's query is (cmd->post names it), so that
// nginx -t says what a 422 would.
char *set_detector_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    try {
        LocConf *lcf = static_cast<LocConf *>(conf);
        const char *name = static_cast<const char *>(cmd->post);
        const std::string_view param(name);
        const bool set = param == "detector" ? lcf->detector != NGX_CONF_UNSET_UINT
                         : param == "season" ? lcf->season != NGX_CONF_UNSET_UINT
                         : param == "trees"  ? lcf->trees != NGX_CONF_UNSET_UINT
                         : param == "sample" ? lcf->sample != NGX_CONF_UNSET_UINT
                                             : lcf->contamination != kUnsetSigma;
        if (set) return const_cast<char *>("is duplicate");
        ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
        DetectorParams p;
        Error e = set_detector_parameter(param, std::string_view(reinterpret_cast<char *>(value[1].data), value[1].len),
                                         &p);
        if (e) {
            // "trees must be ..., not "0"." said of the directive.
            std::string detail = e.detail.substr(param.size());
            if (!detail.empty() && detail.back() == '.') detail.pop_back();
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\"%s", &cmd->name, detail.c_str());
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        if (param == "detector") lcf->detector = static_cast<ngx_uint_t>(p.kind);
        else if (param == "season") lcf->season = static_cast<ngx_uint_t>(p.season);
        else if (param == "trees") lcf->trees = p.trees;
        else if (param == "sample") lcf->sample = p.sample;
        else lcf->contamination = p.contamination;
        return NGX_CONF_OK;
    } catch (const std::exception &) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
}

// The stream directives (cmd->post names the observe query's parameter):
// checked as that parameter is, and then as a whole at merge.
char *set_stream_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    try {
        StreamParams &sp = static_cast<LocConf *>(conf)->stream;
        const std::string_view param(static_cast<const char *>(cmd->post));
        const bool set = param == "detector"  ? sp.kind != static_cast<DetectorKind>(0)
                         : param == "trees"   ? sp.trees != kUnsetWhole
                         : param == "sample"  ? sp.sample != kUnsetWhole
                         : param == "shingle" ? sp.shingle != kUnsetWhole
                         : param == "warmup"  ? sp.warmup != kUnsetWhole
                         : param == "hold"    ? sp.hold != kUnsetWhole
                         : param == "decay"   ? sp.decay != kUnsetShare
                         : param == "alpha"   ? sp.alpha != kUnsetShare
                                              : sp.hourly != 0xff;
        if (set) return const_cast<char *>("is duplicate");
        ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
        StreamParams p;
        Error e = set_stream_parameter(param, std::string_view(reinterpret_cast<char *>(value[1].data), value[1].len), &p);
        if (e) {
            std::string detail = e.detail.substr(param.size());
            if (!detail.empty() && detail.back() == '.') detail.pop_back();
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\"%s", &cmd->name, detail.c_str());
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        if (param == "detector") sp.kind = p.kind;
        else if (param == "trees") sp.trees = p.trees;
        else if (param == "sample") sp.sample = p.sample;
        else if (param == "shingle") sp.shingle = p.shingle;
        else if (param == "warmup") sp.warmup = p.warmup;
        else if (param == "hold") sp.hold = p.hold;
        else if (param == "decay") sp.decay = p.decay;
        else if (param == "alpha") sp.alpha = p.alpha;
        else sp.hourly = p.hourly;
        return NGX_CONF_OK;
    } catch (const std::exception &) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
}

char *set_threshold(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(conf);
    if (lcf->threshold != kUnsetSigma) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    std::string text(reinterpret_cast<char *>(value[1].data), value[1].len);
    char *end = nullptr;
    errno = 0;
    const double t = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(t) || t <= 0 || t > 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_threshold\" must be an anomaly_score above 0 and at most 100, such as 70, not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    lcf->threshold = t;
    return NGX_CONF_OK;
}

// anomaly_alert /location | off
char *set_alert(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    LocConf *lcf = static_cast<LocConf *>(conf);
    if (lcf->alert.data != nullptr) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        lcf->alert.len = 0;
        lcf->alert.data = reinterpret_cast<u_char *>(const_cast<char *>(""));
        return NGX_CONF_OK;
    }
    if (value[1].len == 0 || value[1].data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_alert\" takes the URI of a location, starting with \"/\" (such as /alert), "
                           "or off, not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    for (size_t i = 0; i < value[1].len; i++) {
        if (value[1].data[i] == '?' || value[1].data[i] == '$') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"anomaly_alert\" takes a plain location URI, without arguments or variables "
                               "(the location reads the alert from $anomaly_alert_*), not \"%V\"",
                               &value[1]);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }
    lcf->alert = value[1];
    return NGX_CONF_OK;
}

char *set_alert_interval(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    if (static_cast<LocConf *>(conf)->alert_interval != NGX_CONF_UNSET_MSEC) return const_cast<char *>("is duplicate");
    if (ngx_parse_time(&value[1], 0) == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_alert_interval\" takes a time such as 60s, 5m or 0 (every anomalous answer), "
                           "not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return ngx_conf_set_msec_slot(cf, cmd, conf);
}

char *set_checkpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_msec_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    const ngx_msec_t t = static_cast<MainConf *>(conf)->checkpoint;
    if (t < 100 || t > 3600000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"anomaly_checkpoint\" must be between 100ms and 1h, such as 5s");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

char *set_history(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->history != NGX_CONF_UNSET_UINT) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    const ngx_int_t n = ngx_atoi(value[1].data, value[1].len);
    if (n == NGX_ERROR || static_cast<std::uint64_t>(n) > kMaxHistory) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_history\" takes a number of events from 0 (no history) to %uL, such as "
                           "10000, not \"%V\"",
                           kMaxHistory, &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    mcf->history = static_cast<ngx_uint_t>(n);
    return NGX_CONF_OK;
}

// anomaly_keep_versions N | all: at most N versions a series, the newest.
char *set_keep_versions(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    MainConf *mcf = static_cast<MainConf *>(conf);
    if (mcf->keep_versions != NGX_CONF_UNSET_UINT) return const_cast<char *>("is duplicate");
    ngx_str_t *value = static_cast<ngx_str_t *>(cf->args->elts);
    if (value[1].len == 3 && ngx_strncmp(value[1].data, "all", 3) == 0) {
        mcf->keep_versions = 0;
        return NGX_CONF_OK;
    }
    const ngx_int_t n = ngx_atoi(value[1].data, value[1].len);
    if (n < 1 || n > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"anomaly_keep_versions\" takes a number of versions from 1 to 1000000, or all (the "
                           "default), not \"%V\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    mcf->keep_versions = static_cast<ngx_uint_t>(n);
    return NGX_CONF_OK;
}

ngx_conf_enum_t tails[] = {
    {ngx_string("both"), static_cast<ngx_uint_t>(Tail::both)},
    {ngx_string("upper"), static_cast<ngx_uint_t>(Tail::upper)},
    {ngx_string("lower"), static_cast<ngx_uint_t>(Tail::lower)},
    {ngx_null_string, 0},
};

#define ANOMALY_LOC (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF)

}  // namespace

ngx_command_t commands[] = {
    {ngx_string("anomaly_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_zone,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("anomaly_store"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_store,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("anomaly_thread_pool"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, ngx_conf_set_str_slot,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, thread_pool_name), nullptr},
    {ngx_string("anomaly_fit_memory"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_fit_memory,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, fit_memory), nullptr},
    {ngx_string("anomaly_fit_timeout"), ANOMALY_LOC | NGX_CONF_TAKE1, set_fit_timeout,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, fit_timeout), nullptr},
    {ngx_string("anomaly_fit"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::fit)},
    {ngx_string("anomaly_predict"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::predict)},
    {ngx_string("anomaly_observe"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::observe)},
    {ngx_string("anomaly_score"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::score)},
    {ngx_string("anomaly_checkpoint"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_checkpoint,
     NGX_HTTP_MAIN_CONF_OFFSET, offsetof(MainConf, checkpoint), nullptr},
    {ngx_string("anomaly_keep_versions"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_keep_versions,
     NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("anomaly_delete"), NGX_HTTP_LOC_CONF | NGX_CONF_FLAG, ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(LocConf, delete_series), nullptr},
    {ngx_string("anomaly_export"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint, NGX_HTTP_LOC_CONF_OFFSET, 0,
     reinterpret_cast<void *>(Endpoint::exporting)},
    {ngx_string("anomaly_import"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint, NGX_HTTP_LOC_CONF_OFFSET, 0,
     reinterpret_cast<void *>(Endpoint::importing)},
    {ngx_string("anomaly_history"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1, set_history, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("anomaly_threshold"), ANOMALY_LOC | NGX_CONF_TAKE1, set_threshold, NGX_HTTP_LOC_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("anomaly_alert"), ANOMALY_LOC | NGX_CONF_TAKE1, set_alert, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("anomaly_alert_interval"), ANOMALY_LOC | NGX_CONF_TAKE1, set_alert_interval,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, alert_interval), nullptr},
    {ngx_string("anomaly_stream_detector"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("detector")},
    {ngx_string("anomaly_stream_warmup"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("warmup")},
    {ngx_string("anomaly_stream_hold"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("hold")},
    {ngx_string("anomaly_rcf_trees"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("trees")},
    {ngx_string("anomaly_rcf_sample"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("sample")},
    {ngx_string("anomaly_rcf_shingle"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("shingle")},
    {ngx_string("anomaly_rcf_decay"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("decay")},
    {ngx_string("anomaly_adaptive_alpha"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("alpha")},
    {ngx_string("anomaly_adaptive_hourly"), ANOMALY_LOC | NGX_CONF_TAKE1, set_stream_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("hourly")},
    {ngx_string("anomaly_healthcheck"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::healthcheck)},
    {ngx_string("anomaly_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::metrics)},
    {ngx_string("anomaly_plot"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::plot)},
    {ngx_string("anomaly_series"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::series)},
    {ngx_string("anomaly_versions"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::versions)},
    {ngx_string("anomaly_dashboard"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::dashboard)},
    {ngx_string("anomaly_anomalies"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::anomalies)},
    {ngx_string("anomaly_anomalies_summary"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::anomalies_summary)},
    {ngx_string("anomaly_error"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS, set_endpoint,
     NGX_HTTP_LOC_CONF_OFFSET, 0, reinterpret_cast<void *>(Endpoint::error)},
    {ngx_string("anomaly_sigma"), ANOMALY_LOC | NGX_CONF_TAKE1, set_sigma, NGX_HTTP_LOC_CONF_OFFSET, 0,
     nullptr},
    {ngx_string("anomaly_tail"), ANOMALY_LOC | NGX_CONF_TAKE1, ngx_conf_set_enum_slot,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, tail), tails},
    {ngx_string("anomaly_detector"), ANOMALY_LOC | NGX_CONF_TAKE1, set_detector_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("detector")},
    {ngx_string("anomaly_seasonal_season"), ANOMALY_LOC | NGX_CONF_TAKE1, set_detector_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("season")},
    {ngx_string("anomaly_iforest_trees"), ANOMALY_LOC | NGX_CONF_TAKE1, set_detector_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("trees")},
    {ngx_string("anomaly_iforest_sample"), ANOMALY_LOC | NGX_CONF_TAKE1, set_detector_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("sample")},
    {ngx_string("anomaly_iforest_contamination"), ANOMALY_LOC | NGX_CONF_TAKE1, set_detector_directive,
     NGX_HTTP_LOC_CONF_OFFSET, 0, const_cast<char *>("contamination")},
    {ngx_string("anomaly_min_points"), ANOMALY_LOC | NGX_CONF_TAKE1, set_points,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, min_points), nullptr},
    {ngx_string("anomaly_max_points"), ANOMALY_LOC | NGX_CONF_TAKE1, set_points,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(LocConf, max_points), nullptr},
    ngx_null_command,
};

}  // namespace anomaly
