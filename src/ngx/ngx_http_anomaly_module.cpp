// ngx_http_anomaly_module: the nginx side. The maths, parsing and formats
// live in src/core; the store and its ownership in src/store and owner.cpp.
//
// This file is the module itself: its context, its process hooks and the
// ngx_module_t that ties the rest together. Each endpoint family has a file
// of its own; http.hpp lists them and what they share.

#include "ngx/http.hpp"

#include <exception>
#include <string>
#include <malloc.h>

#include "ngx/owner.hpp"

namespace anomaly {
namespace {

// A million-point fit allocates about 80 MB in passing (the body copy, the
// parsed vectors, the encoded record, LevelDB's batch and memtable). By
// default glibc maps each block over a few MB afresh and unmaps it when
// freed, and gives each pool thread an arena of its own, so nearly every fit
// paid a page fault per 4 KB again: 60% of a 1M-point fit's time here. Blocks
// up to 32 MB (glibc's limit) now come from one heap shared by the worker's
// threads, and up to 256 MB of it is kept free for the next fit (the rest
// is given back once the worker has had no fit for a second: trim_timer).
void keep_fit_memory() {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
    mallopt(M_ARENA_MAX, 1);
}

ngx_int_t init_process(ngx_cycle_t *cycle) noexcept {
    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE) return NGX_OK;
    MainConf *mcf = static_cast<MainConf *>(ngx_http_cycle_get_module_main_conf(cycle, ngx_http_anomaly_module));
    if (mcf == nullptr || mcf->shm_zone == nullptr) return NGX_OK;
    try {
        keep_fit_memory();
        ngx_queue_init(&owner_waits);
        ngx_queue_init(&fits_for_threads);
        fit_threads_max = ngx_ncpu > 0 ? static_cast<ngx_uint_t>(ngx_ncpu) : 1;
        process_pool = mcf->thread_pool;
        fit_timer.handler = fit_timer_handler;
        fit_timer.log = cycle->log;
        fit_timer.data = &fit_timer;
        fit_timer.cancelable = 0;  // a worker waits for its fits before it exits
        trim_timer.handler = trim_timer_handler;
        trim_timer.log = cycle->log;
        trim_timer.data = &trim_timer;
        trim_timer.cancelable = 1;
        trim_task.handler = trim_thread;
        trim_task.event.handler = trim_done;
        trim_task.event.data = &trim_task;
        trim_task.event.log = cycle->log;
        process_zone = Zone::from(mcf->shm_zone);
        StoreSettings settings;
        settings.zone = process_zone;
        settings.dir.assign(reinterpret_cast<char *>(mcf->store.data), mcf->store.len);
        settings.pool = mcf->thread_pool;
        settings.checkpoint = mcf->checkpoint;
        settings.keep_versions = static_cast<std::uint32_t>(mcf->keep_versions);
        return store_start(cycle, settings, fits_check);
    } catch (const std::exception &e) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "anomaly: %s", e.what());
        return NGX_ERROR;
    }
}

void exit_process(ngx_cycle_t *) noexcept {
    try {
        store_stop();
    } catch (...) {
    }
}

ngx_http_module_t module_ctx = {
    add_variables,     // preconfiguration
    alert_postconfiguration,  // postconfiguration
    create_main_conf,
    init_main_conf,
    nullptr,           // create server configuration
    nullptr,           // merge server configuration
    create_loc_conf,
    merge_loc_conf,
};

}  // namespace
}  // namespace anomaly

ngx_module_t ngx_http_anomaly_module = {
    NGX_MODULE_V1,
    &anomaly::module_ctx,
    anomaly::commands,
    NGX_HTTP_MODULE,
    nullptr,                  // init master
    nullptr,                  // init module: see init_zone
    anomaly::init_process,
    nullptr,                  // init thread
    nullptr,                  // exit thread
    anomaly::exit_process,
    nullptr,                  // exit master
    NGX_MODULE_V1_PADDING,
};
