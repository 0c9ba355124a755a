// The lifecycle of what is stored (CONTRACT section 9): DELETE /series/{id},
// GET /export and POST /import. The store's owner does the work (owner.cpp);
// the worker holding the request queues it and answers, or for an export
// sends the file the owner writes as it grows.

#include "ngx/http.hpp"

#include <cerrno>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "core/lifecycle.hpp"
#include "core/ring.hpp"
#include "core/series.hpp"
#include "ngx/owner.hpp"

namespace anomaly {

namespace {

bool query_arg(ngx_http_request_t *r, const char *name, ngx_str_t *value) {
    return ngx_http_arg(r, reinterpret_cast<u_char *>(const_cast<char *>(name)), std::strlen(name), value) == NGX_OK;
}

// Waits for the owner to finish job, then answers with what it wrote.
ngx_int_t wait_for_answer(ngx_http_request_t *r, RequestCtx *ctx, Job *job, ngx_msec_t deadline) {
    ctx->owner_answer = send_owner_answer;
    ctx->started_ns = monotonic_ns();
    ctx->in_progress = true;
    fits_in_progress++;
    wait_for_owner(r, ctx, job);
    ctx->deadline = ngx_current_msec + deadline;
    return NGX_DONE;
}

constexpr ngx_msec_t kImportDeadline = 3600 * 1000;  // an import of a whole node takes minutes

}  // namespace

ngx_int_t send_owner_answer(ngx_http_request_t *r, RequestCtx *, const Job &outcome) {
    if (outcome.state != JobState::done)
        return send_error(r, make_error(static_cast<int>(outcome.status), outcome.code, outcome.error));
    return send_body(r, outcome.status, reinterpret_cast<const char *>(outcome.data), outcome.data_len);
}

// ---- DELETE /series/{id}[?version=vN] ----

ngx_int_t delete_series(ngx_http_request_t *r) noexcept {
    try {
        if (loc_conf(r)->delete_series != 1)
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed",
                          "Deleting is off here: \"anomaly_delete on;\" in this location allows DELETE.");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr || !watch_end(r, ctx)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!series_id_of(r, &ctx->series_id)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        if (!valid_series_id(ctx->series_id)) return send_error(r, 400, "invalid_series_id", kBadSeriesId);
        std::uint32_t version = 0;
        ngx_str_t arg;
        if (query_arg(r, "version", &arg) && !parse_version(view(arg), &version))
            return send_error(r, 422, "invalid_version", "The version must look like v3 or 3 (versions start at v1).");
        Zone *zone = zone_of(r);
        const Shared *sh = zone->shared();
        if (sh->store_state == StoreState::unavailable && sh->owner_pid == 0)
            return send_error(r, 503, "store_unavailable", "The store is unavailable; /healthcheck and the error log say why.");
        Job *job = zone->add_remove(view(ctx->series_id), version);
        if (job == nullptr)
            return send_error(r, 507, "zone_full", "The shared zone is full; raise its size in the anomaly_zone directive.");
        r->main->count++;  // answered later, from fits_check
        return wait_for_answer(r, ctx, job, loc_conf(r)->fit_timeout);
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// ---- POST /import ----

namespace {

void import_body_read(ngx_http_request_t *r) noexcept {
    RequestCtx *ctx = get_ctx(r);
    ngx_int_t rc;
    try {
        ngx_http_request_body_t *rb = r->request_body;
        if (rb == nullptr || rb->temp_file == nullptr) {
            rc = send_error(r, 400, "malformed_export", "The body is empty: POST the bytes GET /export gave.");
            fit_finish(r, ctx, rc);
            return;
        }
        // nginx keeps the body in its file until the request ends
        // (request_body_in_persistent_file); the owner reads it from there.
        const std::string_view path = view(rb->temp_file->file.name);
        Job *job = zone_of(r)->add_transfer(JobKind::importing, path, {}, {}, 0);
        if (job == nullptr) {
            rc = send_error(r, 507, "zone_full", "The shared zone is full; raise its size in the anomaly_zone directive.");
            fit_finish(r, ctx, rc);
            return;
        }
        wait_for_answer(r, ctx, job, kImportDeadline);
        return;
    } catch (const std::exception &e) {
        rc = internal_error(r, e.what());
    }
    fit_finish(r, ctx, rc);
}

}  // namespace

ngx_int_t import_handler(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & NGX_HTTP_POST))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use POST for /import.");
        const ngx_table_elt_t *type = r->headers_in.content_type;
        if (type == nullptr || !is_export_media_type(view(type->value)))
            return reject(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                          "Send an export as Content-Type: application/octet-stream (curl: --data-binary @file "
                          "-H 'Content-Type: application/octet-stream').");
        RequestCtx *ctx = create_ctx(r);
        if (ctx == nullptr || !watch_end(r, ctx)) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        const Shared *sh = zone_of(r)->shared();
        if (sh->store_state == StoreState::unavailable && sh->owner_pid == 0)
            return reject(r, 503, "store_unavailable", "The store is unavailable; /healthcheck and the error log say why.");
        // The whole body goes to a file nginx names and keeps until the
        // request ends, as the dav module does for PUT.
        r->request_body_in_file_only = 1;
        r->request_body_in_persistent_file = 1;
        r->request_body_in_clean_file = 1;
        r->request_body_file_log_level = 0;
        ngx_int_t rc = ngx_http_read_client_request_body(r, import_body_read);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) return rc;
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

// ---- GET /export ----

namespace {

constexpr ngx_msec_t kExportPoll = 5;          // how often the file is looked at while it grows
constexpr ngx_msec_t kExportStart = 30 * 1000; // the owner starts an export within this (one runs at a time)

// One export being sent: the owner writes the file, this sends what is there.
struct ExportSend {
    ngx_http_request_t *request = nullptr;
    Job *job = nullptr;
    std::string path;
    ngx_file_t file{};
    std::uint64_t sent = 0;
    bool header_sent = false;
    ngx_msec_t queued_at = 0;
    ngx_event_t poll{};
};

void export_cleanup(void *data) noexcept {
    auto *st = static_cast<ExportSend *>(data);
    if (st->poll.timer_set) ngx_del_timer(&st->poll);
    if (st->job != nullptr) {
        process_zone->abandon(st->job);  // the owner stops and removes the file
        st->job = nullptr;
    }
    if (st->file.fd != NGX_INVALID_FILE) {
        ::close(st->file.fd);
        st->file.fd = NGX_INVALID_FILE;
    }
    st->~ExportSend();
}

void export_finish(ExportSend *st, ngx_int_t rc) {
    ngx_http_request_t *r = st->request;
    ngx_connection_t *c = r->connection;
    if (st->poll.timer_set) ngx_del_timer(&st->poll);
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

// Flushes what nginx holds when the client can take more.
void export_writer(ngx_http_request_t *r) {
    if (r->connection->write->timedout) {
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }
    if (ngx_http_output_filter(r, nullptr) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }
    ngx_http_core_loc_conf_t *clcf =
        static_cast<ngx_http_core_loc_conf_t *>(ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    if (ngx_handle_write_event(r->connection->write, clcf->send_lowat) != NGX_OK)
        ngx_http_finalize_request(r, NGX_ERROR);
}

ngx_int_t send_header(ExportSend *st, std::uint64_t commits) {
    ngx_http_request_t *r = st->request;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;  // chunked: the size is known at the end
    ngx_str_set(&r->headers_out.content_type, "application/octet-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    ngx_table_elt_t *h = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h == nullptr) return NGX_ERROR;
    h->hash = 1;
    ngx_str_set(&h->key, "X-Anomaly-Commits");
    h->value.data = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT64_LEN));
    if (h->value.data == nullptr) return NGX_ERROR;
    h->value.len = ngx_sprintf(h->value.data, "%uL", commits) - h->value.data;
    ngx_table_elt_t *d = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (d == nullptr) return NGX_ERROR;
    d->hash = 1;
    ngx_str_set(&d->key, "Content-Disposition");
    ngx_str_set(&d->value, "attachment; filename=\"anomaly.export\"");
    st->header_sent = true;
    return ngx_http_send_header(r);
}

void export_poll(ngx_event_t *ev) noexcept {
    auto *st = static_cast<ExportSend *>(ev->data);
    ngx_http_request_t *r = st->request;
    try {
        std::uint64_t progress = 0, commits = 0;
        const JobState state = process_zone->transfer_state(st->job, &progress, &commits);
        if (state == JobState::pending) {
            if (ngx_current_msec - st->queued_at >= kExportStart) {
                Job outcome;
                process_zone->take_result(st->job, "The store did not start the export in time; try again.", &outcome);
                st->job = nullptr;
                export_finish(st, send_error(r, 503, "store_timeout",
                                             "The store did not start the export in time (another export may be "
                                             "running); try again."));
                return;
            }
            ngx_add_timer(&st->poll, kExportPoll);
            return;
        }
        if (state == JobState::failed || (state == JobState::done && st->job->status != 200)) {
            Job outcome;
            process_zone->take_result(st->job, nullptr, &outcome);
            st->job = nullptr;
            std::string body;
            if (outcome.data != nullptr) body.assign(reinterpret_cast<char *>(outcome.data), outcome.data_len);
            process_zone->free_data(outcome.data);
            if (st->header_sent) {  // part of it went: the client sees it end without its end record
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "anomaly export ended early: %s", outcome.error);
                export_finish(st, NGX_ERROR);
                return;
            }
            if (body.empty()) body = render_error(make_error(static_cast<int>(outcome.status), outcome.code, outcome.error));
            export_finish(st, send_body(r, outcome.status, body.data(), body.size()));
            return;
        }
        // The owner writes the header record once its snapshot is taken:
        // until then the commit count is not known.
        if (progress == 0 && state != JobState::done) {
            ngx_add_timer(&st->poll, kExportPoll);
            return;
        }
        if (st->file.fd == NGX_INVALID_FILE && progress > 0) {
            st->file.fd = ::open(st->path.c_str(), O_RDONLY | O_CLOEXEC);
            if (st->file.fd == NGX_INVALID_FILE) {
                export_finish(st, send_error(r, 503, "store_unavailable", "The export's file could not be opened; try again."));
                return;
            }
            ::unlink(st->path.c_str());  // nothing is left behind, whatever happens next
            st->file.name.data = reinterpret_cast<u_char *>(&st->path[0]);
            st->file.name.len = st->path.size();
            st->file.log = r->connection->log;
        }
        if (!st->header_sent) {
            const ngx_int_t rc = send_header(st, commits);
            if (rc == NGX_ERROR || rc > NGX_OK) {
                export_finish(st, rc);
                return;
            }
        }
        const bool last = state == JobState::done;
        if (progress > st->sent || last) {
            ngx_buf_t *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
            if (b == nullptr) {
                export_finish(st, NGX_ERROR);
                return;
            }
            if (progress > st->sent) {
                b->in_file = 1;
                b->file = &st->file;
                b->file_pos = static_cast<off_t>(st->sent);
                b->file_last = static_cast<off_t>(progress);
            }
            b->last_buf = last ? 1 : 0;
            b->flush = 1;
            ngx_chain_t out{b, nullptr};
            st->sent = progress;
            const ngx_int_t rc = ngx_http_output_filter(r, &out);
            if (rc == NGX_ERROR) {
                export_finish(st, NGX_ERROR);
                return;
            }
        }
        if (last) {
            Job outcome;
            process_zone->take_result(st->job, nullptr, &outcome);
            process_zone->free_data(outcome.data);
            st->job = nullptr;
            export_finish(st, NGX_OK);  // nginx sends what is left as the client takes it
            return;
        }
        ngx_add_timer(&st->poll, kExportPoll);
    } catch (const std::exception &e) {
        export_finish(st, st->header_sent ? NGX_ERROR : internal_error(r, e.what()));
    }
}

}  // namespace

ngx_int_t export_handler(ngx_http_request_t *r) noexcept {
    try {
        if (!(r->method & NGX_HTTP_GET))
            return reject(r, NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "Use GET for /export.");
        if (ngx_http_discard_request_body(r) != NGX_OK) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        ngx_str_t arg;
        std::string prefix;
        if (query_arg(r, "series_id", &arg)) {
            if (!valid_series_prefix(view(arg)))
                return send_error(r, 400, "invalid_series_id",
                                  "series_id is a prefix of series ids: letters, digits, '.', '_', ':' and '-', at most 128.");
            prefix.assign(view(arg));
        }
        std::uint64_t since = 0;
        if (query_arg(r, "since", &arg) && !parse_commit_count(view(arg), &since))
            return send_error(r, 422, "invalid_parameter",
                              "since must be a commit count, such as the X-Anomaly-Commits of an earlier export.");
        std::string extra;
        ngx_str_t ring_arg, node_arg;
        const bool has_ring = query_arg(r, "ring", &ring_arg), has_node = query_arg(r, "node", &node_arg);
        if (has_ring != has_node)
            return send_error(r, 422, "invalid_parameter", "ring and node go together: ring=host:port,... and node=host:port.");
        if (has_ring) {
            // Commas may come escaped (%2C): unescape the way nginx does.
            std::string ring(view(ring_arg)), node(view(node_arg));
            for (std::string *s : {&ring, &node}) {
                u_char *dst = reinterpret_cast<u_char *>(&(*s)[0]);
                u_char *src = dst;
                ngx_unescape_uri(&dst, &src, s->size(), NGX_UNESCAPE_URI);
                s->resize(static_cast<std::size_t>(dst - reinterpret_cast<u_char *>(&(*s)[0])));
            }
            std::vector<std::string> servers;
            std::string why;
            if (!parse_ring(ring, &servers, &why))
                return send_error(r, 422, "invalid_parameter", ("ring: " + why).c_str());
            bool found = false;
            for (const std::string &s : servers) found = found || s == node;
            if (!found)
                return send_error(r, 422, "invalid_parameter", "node must be one of the servers listed in ring.");
            extra = ring + "|" + node;
        }
        Zone *zone = zone_of(r);
        const Shared *sh = zone->shared();
        if (sh->store_state == StoreState::unavailable && sh->owner_pid == 0)
            return send_error(r, 503, "store_unavailable", "The store is unavailable; /healthcheck and the error log say why.");

        ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, sizeof(ExportSend));
        if (cln == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
        auto *st = new (cln->data) ExportSend();
        st->file.fd = NGX_INVALID_FILE;
        cln->handler = export_cleanup;
        st->request = r;
        st->path = export_path(next_spool_seq());
        st->queued_at = ngx_current_msec;
        st->job = zone->add_transfer(JobKind::exporting, st->path, prefix, extra, since);
        if (st->job == nullptr)
            return send_error(r, 507, "zone_full", "The shared zone is full; raise its size in the anomaly_zone directive.");
        st->poll.handler = export_poll;
        st->poll.data = st;
        st->poll.log = r->connection->log;
        r->write_event_handler = export_writer;
        r->main->count++;
        store_wake_owner();
        ngx_add_timer(&st->poll, kExportPoll);
        return NGX_DONE;
    } catch (const std::exception &e) {
        return internal_error(r, e.what());
    }
}

}  // namespace anomaly
