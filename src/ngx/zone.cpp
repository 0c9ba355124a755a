#include "ngx/zone.hpp"

#include "core/encoding.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace anomaly {

namespace {

std::uint32_t hash_of(std::string_view id) {
    return ngx_crc32_short(reinterpret_cast<u_char *>(const_cast<char *>(id.data())), id.size());
}

std::string_view id_of(const SeriesNode *n) {
    return std::string_view(reinterpret_cast<const char *>(n->id), n->id_len);
}

// Version v's image, nullptr when there is none (under the lock).
const ModelHeader *image_at(const SeriesNode *n, std::uint32_t v) {
    return v >= n->first && v - n->first < n->capacity ? n->versions[v - n->first] : nullptr;
}

void copy_text(char *dst, std::size_t cap, const char *src) {
    std::size_t n = std::min(std::strlen(src), cap - 1);
    std::memcpy(dst, src, n);
    dst[n] = '\0';
}

// Orders nodes by hash, then by id (hashes collide).
void insert_series(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
                   ngx_rbtree_node_t *sentinel) {
    for (;;) {
        ngx_rbtree_node_t **p;
        if (node->key != temp->key) {
            p = node->key < temp->key ? &temp->left : &temp->right;
        } else {
            const SeriesNode *a = reinterpret_cast<SeriesNode *>(node);
            const SeriesNode *b = reinterpret_cast<SeriesNode *>(temp);
            p = id_of(a) < id_of(b) ? &temp->left : &temp->right;
        }
        if (*p == sentinel) {
            *p = node;
            break;
        }
        temp = *p;
    }
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}

}  // namespace

namespace {

enum class Found { running, zombie, absent, unknown };

// Reads the start time of a process from /proc/<pid>/stat: field 22, counted
// after the command name, which may hold spaces and parentheses.
Found process_start(ngx_pid_t pid, std::uint64_t *start) {
    char path[32];
    std::snprintf(path, sizeof(path), "/proc/%ld/stat", static_cast<long>(pid));
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ESRCH ? Found::absent : Found::unknown;
    char buf[1024];
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0) return n == 0 || errno == ESRCH ? Found::absent : Found::unknown;
    buf[n] = '\0';
    const char *p = std::strrchr(buf, ')');
    if (p == nullptr || p[1] != ' ') return Found::unknown;
    p += 2;                          // field 3, the state
    if (*p == 'Z' || *p == 'X') return Found::zombie;
    for (int field = 3; field < 22; field++) {
        p = std::strchr(p, ' ');
        if (p == nullptr) return Found::unknown;
        p++;
    }
    char *end = nullptr;
    *start = std::strtoull(p, &end, 10);
    return end != p ? Found::running : Found::unknown;
}

}  // namespace

ProcessId ProcessId::self() {
    // Read again after a fork: nginx's workers start as copies of the master.
    static ProcessId me{};
    if (me.pid != ngx_pid) {
        std::uint64_t start = 0;
        if (process_start(ngx_pid, &start) != Found::running) start = 0;
        me = ProcessId{ngx_pid, start};
    }
    return me;
}

bool ProcessId::alive() const {
    if (pid <= 0) return false;
    std::uint64_t now_start = 0;
    switch (process_start(pid, &now_start)) {
    case Found::running:
        return start == 0 || now_start == start;
    case Found::zombie:
        return false;
    case Found::absent:   // or hidden (no /proc, hidepid): then the pid alone
    case Found::unknown:  // tells, and a pid in use counts as alive, since a
        break;            // live worker taken for dead could lose its jobs
    }
    return kill(pid, 0) == 0 || errno == EPERM;
}

const char *store_state_name(StoreState s) {
    switch (s) {
    case StoreState::starting: return "starting";
    case StoreState::loading: return "loading";
    case StoreState::ready: return "ready";
    case StoreState::unavailable: return "unavailable";
    case StoreState::waiting: return "waiting";
    }
    return "unknown";
}

ngx_int_t Zone::init(ngx_shm_zone_t *shm_zone, void *data) {
    Zone *zone = from(shm_zone);
    zone->name_ = shm_zone->shm.name;
    zone->size_ = shm_zone->shm.size;
    zone->pool_ = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);
    if (data != nullptr) {  // reload with the same zone: keep the models
        // Read from the memory itself, not from the old Zone object, which
        // another build of the module may have laid out differently too.
        const auto *header = static_cast<const ZoneHeader *>(zone->pool_->data);
        std::string problem = zone_header_problem(header, std::string_view(reinterpret_cast<char *>(zone->name_.data),
                                                                          zone->name_.len),
                                                  kZoneLayout, zone->size_);
        if (!problem.empty()) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0, "%s", problem.c_str());
            return NGX_ERROR;
        }
        zone->sh_ = static_cast<Shared *>(zone->pool_->data);
        const HistoryRing *ring = zone->sh_->history;
        const std::uint64_t kept = ring == nullptr ? 0 : ring->capacity;
        if (zone->history_explicit_ && zone->history_wanted_ == 0 && kept != 0) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "anomaly_history 0: no more anomalies are recorded; anomaly_zone \"%V\" keeps the %uL "
                          "events it holds until the next restart",
                          &zone->name_, kept);
        } else if (zone->history_explicit_ && zone->history_wanted_ != kept) {
            ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                          "anomaly_history %uL takes effect at the next restart: anomaly_zone \"%V\" keeps its "
                          "history of %uL events across a reload",
                          zone->history_wanted_, &zone->name_, kept);
        }
        return NGX_OK;
    }
    if (shm_zone->shm.exists) {  // Windows-style reattach; kept for completeness
        zone->sh_ = static_cast<Shared *>(zone->pool_->data);
        return NGX_OK;
    }
    Shared *sh = static_cast<Shared *>(ngx_slab_calloc(zone->pool_, sizeof(Shared)));
    if (sh == nullptr) return NGX_ERROR;
    zone->pool_->data = sh;
    zone->sh_ = sh;
    sh->header = make_zone_header(kZoneLayout, zone->size_);
    ngx_rbtree_init(&sh->tree, &sh->sentinel, insert_series);
    // A bucket for every 256 bytes of zone: about one series a bucket when full.
    std::size_t buckets = 1024;
    while (buckets * 2 <= shm_zone->shm.size / 256) buckets *= 2;
    sh->buckets = static_cast<SeriesNode **>(ngx_slab_calloc(zone->pool_, buckets * sizeof(SeriesNode *)));
    if (sh->buckets == nullptr) return NGX_ERROR;
    sh->bucket_mask = static_cast<std::uint32_t>(buckets - 1);
    ngx_queue_init(&sh->jobs);
    sh->next_job_id = 1;
    // Alert suppression: a slot for every 4 KB of zone (1024 to 65536), a
    // series each, about 24 bytes a slot.
    std::size_t alert_slots = 1024;
    while (alert_slots < 65536 && alert_slots * 2 <= shm_zone->shm.size / 4096) alert_slots *= 2;
    sh->alerts = static_cast<AlertState *>(
        ngx_slab_calloc(zone->pool_, sizeof(AlertState) + (alert_slots - 1) * sizeof(AlertSlot)));
    if (sh->alerts == nullptr) return NGX_ERROR;
    sh->alerts->slot_count = static_cast<std::uint32_t>(alert_slots);
    sh->store_state = StoreState::starting;
    if (zone->init_history(shm_zone->shm.log) != NGX_OK) return NGX_ERROR;

    static const char ctx_prefix[] = " in anomaly_zone \"";
    size_t len = sizeof(ctx_prefix) + shm_zone->shm.name.len + 1;
    zone->pool_->log_ctx = static_cast<u_char *>(ngx_slab_alloc(zone->pool_, len));
    if (zone->pool_->log_ctx == nullptr) return NGX_ERROR;
    ngx_sprintf(zone->pool_->log_ctx, "%s%V\"%Z", ctx_prefix, &shm_zone->shm.name);
    zone->pool_->log_nomem = 0;  // a full zone is answered 507 and logged by us
    return NGX_OK;
}

// The ring of the anomaly history: the default shrinks to an eighth of a
// small zone; an explicit size must fit in half of it.
ngx_int_t Zone::init_history(ngx_log_t *log) {
    std::uint64_t events = history_wanted_;
    if (!history_explicit_) events = std::min<std::uint64_t>(events, size_ / 8 / sizeof(HistorySlot));
    if (events == 0) return NGX_OK;
    const std::size_t bytes = history_bytes(events);
    if (history_explicit_ && bytes > size_ / 2) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "anomaly_history %uL needs %uzk, more than half of anomaly_zone \"%V\" (%uzk); raise the "
                      "zone's size or lower anomaly_history",
                      events, bytes / 1024 + 1, &name_, size_ / 1024);
        return NGX_ERROR;
    }
    auto *ring = static_cast<HistoryRing *>(ngx_slab_calloc(pool_, bytes));
    if (ring == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, log, 0, "anomaly_zone \"%V\" has no room for anomaly_history %uL", &name_,
                      events);
        return NGX_ERROR;
    }
    history_init(ring, events);
    sh_->history = ring;
    return NGX_OK;
}

SeriesNode *Zone::series_node(std::string_view series_id) { return find_node(series_id, hash_of(series_id)); }

void Zone::count_scored(SeriesNode *node, std::uint64_t points, std::uint64_t anomalies) {
    if (points > 0) __atomic_fetch_add(&node->points_scored, points, __ATOMIC_RELAXED);
    if (anomalies == 0) return;
    if (__atomic_fetch_add(&node->anomalies, anomalies, __ATOMIC_RELAXED) != 0) return;
    // Its first anomaly: linked in under the lock, once a series, so that a
    // delete can unlink it (readers walk the list without the lock).
    ZoneLock guard(this);
    if (node->removed || node->in_anomalous) return;
    node->in_anomalous = 1;
    node->next_anomalous = sh_->anomalous;
    __atomic_store_n(&sh_->anomalous, node, __ATOMIC_RELEASE);
}

void Zone::anomalous_series(std::vector<SeriesAnomalies> *out) {
    for (SeriesNode *s = __atomic_load_n(&sh_->anomalous, __ATOMIC_ACQUIRE); s != nullptr;
         s = __atomic_load_n(&s->next_anomalous, __ATOMIC_ACQUIRE)) {
        SeriesAnomalies a;
        a.series_id.assign(reinterpret_cast<const char *>(s->id), s->id_len);
        a.anomalies = __atomic_load_n(&s->anomalies, __ATOMIC_RELAXED);
        a.points_scored = __atomic_load_n(&s->points_scored, __ATOMIC_RELAXED);
        out->push_back(std::move(a));
    }
}

void Zone::history_totals(std::uint64_t *points, std::uint64_t *anomalies) {
    *points = *anomalies = 0;
    for (ngx_uint_t i = 0; i < kStatSlots; i++) {
        *points += __atomic_load_n(&sh_->stats[i].history_points, __ATOMIC_RELAXED);
        *anomalies += __atomic_load_n(&sh_->stats[i].history_anomalies, __ATOMIC_RELAXED);
    }
}

bool Zone::load_history(const std::vector<HistoryEvent> &events) {
    HistoryRing *ring = sh_->history;
    if (ring == nullptr || !anomaly::history_load(ring, events)) return false;
    ZoneLock guard(this);
    sh_->history_persisted = std::max(sh_->history_persisted, std::min<std::uint64_t>(events.size(), ring->capacity));
    return true;
}

std::uint64_t Zone::history_persisted() {
    ZoneLock guard(this);
    return sh_->history_persisted;
}

void Zone::set_history_persisted(std::uint64_t sequence) {
    ZoneLock guard(this);
    if (sequence > sh_->history_persisted) sh_->history_persisted = sequence;
}

namespace {

// What the slab allocator takes for a block: a power of two up to half a
// page, whole pages above.
std::size_t slab_chunk(std::size_t bytes) {
    const std::size_t page = ngx_pagesize;
    if (bytes > page / 2) return (bytes + page - 1) / page * page;
    std::size_t chunk = 8;
    while (chunk < bytes) chunk *= 2;
    return chunk;
}

// An image's chunk and the version's slot in its series' array.
std::size_t zone_bytes_of(std::size_t image_bytes) { return slab_chunk(image_bytes) + sizeof(const ModelHeader *); }

// Jobs the owner's commit task takes, counted in Shared::jobs_pending while
// they wait (reads count in reads_queued; exports and imports have tasks of
// their own and no count).
bool commit_task_job(JobKind kind) { return kind == JobKind::fit || kind == JobKind::remove; }

void count_version(Shared *sh, const ModelHeader &image) {
    sh->versions_stored++;
    const auto k = static_cast<std::size_t>(image.kind);
    if (k < kDetectorSlots) {
        sh->kind_versions[k]++;
        sh->kind_bytes[k] += zone_bytes_of(image.bytes);
    }
}

}  // namespace

SeriesNode *Zone::find_node(std::string_view series_id, std::uint32_t hash) {
    // Read without the lock by find_stream: a node is whole before it is
    // linked (release), and never unlinked.
    for (SeriesNode *s = __atomic_load_n(&sh_->buckets[hash & sh_->bucket_mask], __ATOMIC_ACQUIRE); s != nullptr;
         s = s->next) {
        if (s->node.key == hash && id_of(s) == series_id) return s;
    }
    return nullptr;
}

SeriesNode *Zone::find_or_add_node(std::string_view series_id) {
    std::uint32_t hash = hash_of(series_id);
    SeriesNode *s = find_node(series_id, hash);
    if (s != nullptr) return s;
    size_t size = offsetof(SeriesNode, id) + series_id.size();
    s = static_cast<SeriesNode *>(ngx_slab_calloc_locked(pool_, size));
    if (s == nullptr) return nullptr;
    s->node.key = hash;
    s->first = 1;
    s->id_len = static_cast<std::uint8_t>(series_id.size());
    std::memcpy(s->id, series_id.data(), series_id.size());
    ngx_rbtree_insert(&sh_->tree, &s->node);
    SeriesNode **bucket = &sh_->buckets[hash & sh_->bucket_mask];
    s->next = *bucket;
    __atomic_store_n(bucket, s, __ATOMIC_RELEASE);
    return s;
}

bool Zone::ensure_slot(SeriesNode *node, std::uint32_t v) {
    if (node->capacity != 0 && v >= node->first && v - node->first < node->capacity) return true;
    const std::uint32_t lo = node->capacity == 0 ? v : std::min(node->first, v);
    const std::uint32_t hi = node->capacity == 0 ? v : std::max(node->first + node->capacity - 1, v);
    const std::uint32_t need = hi - lo + 1;
    // Doubling when a series grows at its newest end, as fits make it.
    std::uint32_t cap = lo == node->first ? std::max<std::uint32_t>(need, node->capacity * 2) : need;
    using Slot = const ModelHeader *;
    auto *grown = static_cast<Slot *>(ngx_slab_alloc_locked(pool_, cap * sizeof(Slot)));
    if (grown == nullptr && cap > need) {  // try the exact size before giving up
        cap = need;
        grown = static_cast<Slot *>(ngx_slab_alloc_locked(pool_, cap * sizeof(Slot)));
    }
    if (grown == nullptr) return false;
    for (std::uint32_t i = 0; i < cap; i++) grown[i] = nullptr;
    if (node->versions != nullptr) {
        std::memcpy(grown + (node->first - lo), node->versions, node->capacity * sizeof(Slot));
        ngx_slab_free_locked(pool_, node->versions);
    }
    node->versions = grown;
    node->capacity = cap;
    node->first = lo;
    return true;
}

void Zone::compact_locked(SeriesNode *node) {
    using Slot = const ModelHeader *;
    std::uint32_t lo = 0, hi = 0;  // indexes of the oldest and newest image, hi exclusive
    bool any = false;
    for (std::uint32_t i = 0; i < node->capacity; i++) {
        if (node->versions[i] == nullptr) continue;
        if (!any) lo = i;
        any = true;
        hi = i + 1;
    }
    if (!any) {
        if (node->versions != nullptr) ngx_slab_free_locked(pool_, node->versions);
        node->versions = nullptr;
        node->capacity = 0;
        node->first = 1;
        node->latest = 0;
        return;
    }
    node->latest = node->first + hi - 1;
    const std::uint32_t span = hi - lo;
    if (lo == 0 && node->capacity <= 2 * span + 8) return;
    // Exactly the versions left: what older versions took comes back.
    auto *smaller = static_cast<Slot *>(ngx_slab_alloc_locked(pool_, span * sizeof(Slot)));
    if (smaller != nullptr) {
        std::memcpy(smaller, node->versions + lo, span * sizeof(Slot));
        ngx_slab_free_locked(pool_, node->versions);
        node->versions = smaller;
        node->capacity = span;
    } else {  // no room even for that: move down in place
        std::memmove(node->versions, node->versions + lo, span * sizeof(Slot));
        for (std::uint32_t i = span; i < node->capacity; i++) node->versions[i] = nullptr;
    }
    node->first += lo;
}

// Under the lock: the node of a series with at least one version, or why
// there is none to read.
Lookup Zone::trained_node_locked(std::string_view series_id, std::uint32_t hash, SeriesNode **node) {
    if (!sh_->loaded) return Lookup::not_loaded;
    *node = find_node(series_id, hash);
    if (*node == nullptr || (*node)->latest == 0) return Lookup::series_not_found;
    return Lookup::found;
}

Lookup Zone::find_model(std::string_view series_id, std::uint32_t version, const ModelHeader **out,
                        SeriesNode **node) {
    const std::uint32_t hash = hash_of(series_id);
    SeriesNode *s = nullptr;
    ZoneLock guard(this);
    Lookup result = trained_node_locked(series_id, hash, &s);
    if (result == Lookup::found) {
        if (node != nullptr) *node = s;
        const ModelHeader *image = image_at(s, version == 0 ? s->latest : version);
        if (image == nullptr) result = Lookup::version_not_found;
        else *out = image;
    }
    return result;
}

Lookup Zone::versions(std::string_view series_id, std::uint32_t after, std::size_t limit, bool newest,
                      std::vector<VersionSummary> *out, bool *more) {
    const std::uint32_t hash = hash_of(series_id);
    *more = false;
    out->clear();
    out->reserve(limit);  // before the lock: nothing allocates under it
    SeriesNode *s = nullptr;
    ZoneLock guard(this);
    Lookup result = trained_node_locked(series_id, hash, &s);
    if (result != Lookup::found) return result;
    auto take = [&](std::uint32_t v) {  // false once the page is full
        const ModelHeader *image = image_at(s, v);
        if (image == nullptr) return true;
        if (out->size() == limit) {
            *more = true;
            return false;
        }
        out->push_back(summary_of(*image));
        return true;
    };
    if (newest) {
        const std::uint32_t from = after == 0 || after > s->latest + 1 ? s->latest + 1 : after;
        for (std::uint32_t v = from - 1; v >= s->first && take(v); v--) {
        }
    } else {
        for (std::uint32_t v = std::max(after + 1, s->first); v <= s->latest && take(v); v++) {
        }
    }
    return result;
}

Lookup Zone::list_series(std::string_view after, std::size_t limit, std::vector<SeriesSummary> *out,
                         bool *more) {
    *more = false;
    out->clear();
    out->reserve(limit);  // before the lock: nothing allocates under it
    const std::uint32_t after_hash = hash_of(after);
    ZoneLock guard(this);
    if (!sh_->loaded) return Lookup::not_loaded;
    ngx_rbtree_node_t *sentinel = sh_->tree.sentinel;
    ngx_rbtree_node_t *node = sh_->tree.root;
    ngx_rbtree_node_t *first = nullptr;
    if (node != sentinel && after.empty()) {
        first = ngx_rbtree_min(node, sentinel);
    } else {
        // The first node ordered after (after_hash, after), whether or not
        // that series still exists.
        while (node != sentinel) {
            const SeriesNode *s = reinterpret_cast<SeriesNode *>(node);
            const bool greater = node->key != after_hash ? node->key > after_hash : id_of(s) > after;
            if (greater) {
                first = node;
                node = node->left;
            } else {
                node = node->right;
            }
        }
    }
    for (node = first; node != nullptr; node = ngx_rbtree_next(&sh_->tree, node)) {
        const SeriesNode *s = reinterpret_cast<SeriesNode *>(node);
        const StreamSlot *stream = __atomic_load_n(&s->stream, __ATOMIC_ACQUIRE);
        if (s->latest == 0 && stream == nullptr) continue;
        if (out->size() == limit) {
            *more = true;
            break;
        }
        SeriesSummary summary;
        summary.id_len = s->id_len;
        std::memcpy(summary.id, s->id, s->id_len);
        if (s->latest != 0) {
            summary.has_versions = true;
            summary.latest = summary_of(*image_at(s, s->latest));
            summary.versions = s->count;
        }
        if (stream != nullptr) {
            summary.has_stream = true;
            summary.stream = summary_of_stream(stream);
        }
        summary.points_scored = __atomic_load_n(&s->points_scored, __ATOMIC_RELAXED);
        summary.anomalies = __atomic_load_n(&s->anomalies, __ATOMIC_RELAXED);
        out->push_back(summary);
    }
    return Lookup::found;
}

Job *Zone::add_job(std::string_view series_id, std::uint64_t points, std::uint64_t spool_seq,
                   bool in_memory) {
    ZoneLock guard(this);
    return add(JobKind::fit, series_id, 0, points, spool_seq, in_memory);
}

// Under the lock.
Job *Zone::add(JobKind kind, std::string_view series_id, std::uint32_t version, std::uint64_t points,
               std::uint64_t spool_seq, bool in_memory) {
    Job *job = static_cast<Job *>(ngx_slab_calloc_locked(pool_, sizeof(Job)));
    if (job == nullptr) return nullptr;
    job->kind = kind;
    job->version = version;
    job->id = sh_->next_job_id++;
    job->submitter = ProcessId::self();
    job->state = JobState::pending;
    job->spool_seq = spool_seq;
    job->in_memory = in_memory;
    job->points = points;
    job->id_len = static_cast<std::uint8_t>(series_id.size());
    std::memcpy(job->series_id, series_id.data(), series_id.size());
    ngx_queue_insert_tail(&sh_->jobs, &job->link);
    if (kind == JobKind::read) sh_->reads_queued++;  // reads are not fits waiting
    else if (commit_task_job(kind)) ngx_atomic_fetch_add(&sh_->jobs_pending, 1);
    return job;
}

Job *Zone::add_remove(std::string_view series_id, std::uint32_t version) {
    ZoneLock guard(this);
    return add(JobKind::remove, series_id, version, 0, 0, false);
}

Job *Zone::add_transfer(JobKind kind, std::string_view path, std::string_view prefix, std::string_view extra,
                        std::uint64_t since) {
    if (path.size() >= kJobPathLength || prefix.size() > kMaxSeriesIdLength) return nullptr;
    ZoneLock guard(this);
    u_char *data = nullptr;
    if (!extra.empty()) {
        data = static_cast<u_char *>(ngx_slab_alloc_locked(pool_, extra.size()));
        if (data == nullptr) return nullptr;
        std::memcpy(data, extra.data(), extra.size());
    }
    Job *job = add(kind, prefix, 0, 0, 0, false);
    if (job == nullptr) {
        if (data != nullptr) ngx_slab_free_locked(pool_, data);
        return nullptr;
    }
    job->data = data;
    job->data_len = static_cast<std::uint32_t>(extra.size());
    std::memcpy(job->path, path.data(), path.size());
    job->path[path.size()] = '\0';
    job->counts[0] = since;
    return job;
}

JobState Zone::transfer_state(Job *job, std::uint64_t *progress, std::uint64_t *commits) {
    ZoneLock guard(this);
    *progress = __atomic_load_n(&job->progress, __ATOMIC_ACQUIRE);
    *commits = __atomic_load_n(&job->counts[1], __ATOMIC_RELAXED);
    return job->state;
}

bool Zone::has_pending(JobKind kind) {
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs); q = ngx_queue_next(q)) {
        const Job *job = ngx_queue_data(q, Job, link);
        if (job->state == JobState::pending && job->kind == kind) return true;
    }
    return false;
}

bool Zone::claim_transfer(JobKind kind, Claim *c) {
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs);
         q = ngx_queue_next(q)) {
        Job *job = ngx_queue_data(q, Job, link);
        if (job->state != JobState::pending || job->kind != kind) continue;
        job->state = JobState::committing;
        c->job = job;
        c->submitter = job->submitter;
        c->series_id = std::string_view(reinterpret_cast<char *>(job->series_id), job->id_len);
        c->path = std::string_view(job->path);
        c->extra = std::string_view(reinterpret_cast<char *>(job->data), job->data_len);
        c->since = job->counts[0];
        return true;
    }
    return false;
}

void Zone::set_progress(Job *job, std::uint64_t bytes, std::uint64_t commits) {
    // Without the zone's lock: the export's thread runs at nice 19, and one
    // preempted while holding it would hold up every prediction. A running
    // job is never freed (an abandoned one is only flagged).
    __atomic_store_n(&job->counts[1], commits, __ATOMIC_RELAXED);
    __atomic_store_n(&job->progress, bytes, __ATOMIC_RELEASE);
}

void Zone::finish_job(const Claim &c) {
    ZoneLock guard(this);
    if (c.job->data != nullptr) {  // a transfer's filter
        ngx_slab_free_locked(pool_, c.job->data);
        c.job->data = nullptr;
        c.job->data_len = 0;
    }
    if (c.job->abandoned) {
        free_job_locked(c.job);
        return;
    }
    c.job->status = c.fail_status == 0 ? 200 : c.fail_status;
    if (!c.data.empty()) {
        auto *data = static_cast<u_char *>(ngx_slab_alloc_locked(pool_, c.data.size()));
        if (data == nullptr) {
            fail_job_locked(c.job, 507, "zone_full",
                            "The shared zone has no room for the answer; raise its size in the anomaly_zone directive.");
            return;
        }
        std::memcpy(data, c.data.data(), c.data.size());
        c.job->data = data;
        c.job->data_len = static_cast<std::uint32_t>(c.data.size());
    }
    c.job->state = JobState::done;
}

Job *Zone::add_read(std::string_view series_id, std::uint32_t version, bool *busy) {
    ZoneLock guard(this);
    *busy = sh_->reads_queued >= kMaxReads;
    if (*busy) return nullptr;
    return add(JobKind::read, series_id, version, 0, 0, false);
}

// Under the lock: unlinks and frees a job and the answer it still holds.
void Zone::free_job_locked(Job *job) {
    if (job->kind == JobKind::read) sh_->reads_queued--;
    else if (job->state == JobState::pending && commit_task_job(job->kind)) ngx_atomic_fetch_add(&sh_->jobs_pending, -1);
    if (job->data != nullptr) ngx_slab_free_locked(pool_, job->data);
    ngx_queue_remove(&job->link);
    ngx_slab_free_locked(pool_, job);
}

void Zone::claim_reads(std::vector<Claim> *claims) {
    claims->reserve(claims->size() + kMaxReads);  // before the lock
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs);
         q = ngx_queue_next(q)) {
        Job *job = ngx_queue_data(q, Job, link);
        if (job->state != JobState::pending || job->kind != JobKind::read) continue;
        if (claims->size() == claims->capacity()) break;
        job->state = JobState::committing;
        Claim c;
        c.job = job;
        c.submitter = job->submitter;
        c.version = job->version;
        c.series_id = std::string_view(reinterpret_cast<char *>(job->series_id), job->id_len);
        claims->push_back(std::move(c));
    }
}

void Zone::finish_reads(const std::vector<Claim> &claims) {
    ZoneLock guard(this);
    for (const Claim &c : claims) {
        if (c.job->abandoned) {
            free_job_locked(c.job);
            continue;
        }
        if (c.fail_status != 0) {
            fail_job_locked(c.job, c.fail_status, c.fail_code, c.fail_detail.c_str());
            continue;
        }
        auto *data = static_cast<u_char *>(ngx_slab_alloc_locked(pool_, c.data.size() == 0 ? 1 : c.data.size()));
        if (data == nullptr) {
            u_char detail[kJobErrorLength];
            u_char *end = ngx_snprintf(detail, sizeof(detail) - 1,
                                       "The shared zone \"%V\" has no room for the plot's data; "
                                       "raise its size in the anomaly_zone directive.%Z",
                                       &name_);
            (void)end;
            fail_job_locked(c.job, 507, "zone_full", reinterpret_cast<char *>(detail));
            continue;
        }
        std::memcpy(data, c.data.data(), c.data.size());
        c.job->data = data;
        c.job->data_len = static_cast<std::uint32_t>(c.data.size());
        c.job->state = JobState::done;
    }
}

bool Zone::take_result(Job *job, const char *withdraw, Job *outcome) {
    ZoneLock guard(this);
    bool finished = job->state == JobState::done || job->state == JobState::failed;
    if (!finished && withdraw != nullptr && job->state == JobState::pending) {
        if (commit_task_job(job->kind)) ngx_atomic_fetch_add(&sh_->jobs_pending, -1);
        fail_job_locked(job, 503, "store_unavailable", withdraw);
        finished = true;
    }
    if (finished) {
        *outcome = *job;
        job->data = nullptr;  // now the caller's, until free_data()
        free_job_locked(job);
    }
    return finished;
}

void Zone::free_data(u_char *data) {
    if (data == nullptr) return;
    ZoneLock guard(this);
    ngx_slab_free_locked(pool_, data);
}

Abandoned Zone::abandon(Job *job) {
    ZoneLock guard(this);
    switch (job->state) {
    case JobState::pending:
        free_job_locked(job);
        return Abandoned::withdrawn;
    case JobState::committing:
        job->abandoned = 1;
        return Abandoned::flagged;
    default:
        free_job_locked(job);
        return Abandoned::freed;
    }
}

void Zone::fail_job_locked(Job *job, std::uint32_t status, const char *code, const char *detail) {
    job->state = JobState::failed;
    job->status = status;
    copy_text(job->code, sizeof(job->code), code);
    copy_text(job->error, sizeof(job->error), detail);
}

void Zone::claim_pending(std::vector<Claim> *claims, std::size_t max_jobs,
                         std::uint64_t max_points) {
    claims->reserve(max_jobs);  // before the lock
    std::uint64_t points = 0;
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs);
         q = ngx_queue_next(q)) {
        Job *job = ngx_queue_data(q, Job, link);
        if (job->state != JobState::pending || !commit_task_job(job->kind)) continue;
        // Fits and deletes take effect in the order they came: a delete
        // ends the batch before it and runs alone.
        if (job->kind == JobKind::remove && !claims->empty()) break;
        if (!claims->empty() && (claims->size() >= max_jobs || points + job->points > max_points))
            break;
        ngx_atomic_fetch_add(&sh_->jobs_pending, -1);
        job->state = JobState::committing;
        if (job->kind == JobKind::fit) job->version = 0;  // a delete's is the version it deletes
        points += job->points;
        Claim c;
        c.job = job;
        c.spool_seq = job->spool_seq;
        c.in_memory = job->in_memory;
        c.submitter = job->submitter;
        c.series_id = std::string_view(reinterpret_cast<char *>(job->series_id), job->id_len);
        c.remove = job->kind == JobKind::remove;
        c.version = c.remove ? job->version : 0;
        claims->push_back(std::move(c));
        if (c.remove) break;
    }
}

void Zone::assign_versions(std::vector<Claim> *claims, const std::vector<std::size_t> &image_bytes) {
    // The detail of a zone_full, made before the lock.
    u_char detail[kJobErrorLength];
    u_char *end = ngx_snprintf(detail, sizeof(detail),
                               "The shared zone \"%V\" has no room for another version; "
                               "raise its size in the anomaly_zone directive.",
                               &name_);
    for (Claim &c : *claims) {
        if (c.fail_status == 0) c.fail_detail.reserve(end - detail);
    }
    ZoneLock guard(this);
    for (std::size_t i = 0; i < claims->size(); i++) {
        Claim &c = (*claims)[i];
        if (c.fail_status != 0) continue;
        SeriesNode *node = find_or_add_node(c.series_id);
        void *slot = nullptr;
        if (node != nullptr && ensure_slot(node, node->latest + node->reserved + 1))
            slot = ngx_slab_alloc_locked(pool_, image_bytes[i]);
        if (slot == nullptr) {
            c.fail_status = 507;
            c.fail_code = "zone_full";
            c.fail_detail.assign(reinterpret_cast<char *>(detail), end - detail);  // reserved: no allocation
            continue;
        }
        c.slot = static_cast<ModelHeader *>(slot);
        c.node = node;
        c.version = node->latest + ++node->reserved;
        c.job->version = c.version;
    }
}

void Zone::finish_commit(const std::vector<Claim> &claims, const char *commit_error) {
    ZoneLock guard(this);
    for (const Claim &c : claims) {
        if (c.node != nullptr) c.node->reserved = 0;
        const bool published = c.fail_status == 0 && commit_error == nullptr && c.slot != nullptr;
        if (published) {
            c.node->versions[c.version - c.node->first] = c.slot;  // ensure_slot made room
            c.node->count++;
            if (c.version > c.node->latest) {
                if (c.node->latest == 0) sh_->series_trained++;
                c.node->latest = c.version;
            }
            count_version(sh_, *c.slot);
            sh_->last_write_ms = c.slot->trained_at_ms;
        } else if (c.slot != nullptr) {
            ngx_slab_free_locked(pool_, c.slot);
        }
        if (c.job->abandoned) {  // nobody waits for the answer
            free_job_locked(c.job);
        } else if (c.fail_status != 0) {
            fail_job_locked(c.job, c.fail_status, c.fail_code, c.fail_detail.c_str());
        } else if (commit_error != nullptr) {
            fail_job_locked(c.job, 503, "store_unavailable", commit_error);
        } else {
            c.job->state = JobState::done;
        }
    }
}

void Zone::detector_counts(std::uint64_t *versions, std::uint64_t *bytes) {
    ZoneLock guard(this);
    std::memcpy(versions, sh_->kind_versions, sizeof(sh_->kind_versions));
    std::memcpy(bytes, sh_->kind_bytes, sizeof(sh_->kind_bytes));
}

bool Zone::fill_recovered_slot(Claim *c, const std::string &image) {
    void *slot;
    {
        ZoneLock guard(this);
        slot = ngx_slab_alloc_locked(pool_, image.size());
    }
    if (slot == nullptr) return false;
    std::memcpy(slot, image.data(), image.size());  // not yet visible: no lock needed
    c->slot = static_cast<ModelHeader *>(slot);
    return true;
}

void Zone::committing_jobs(std::vector<Claim> *claims, std::size_t max_jobs) {
    claims->reserve(max_jobs);  // before the lock
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs);
         q = ngx_queue_next(q)) {
        Job *job = ngx_queue_data(q, Job, link);
        if (job->state != JobState::committing) continue;
        if (job->kind == JobKind::read) {  // a read a dead owner began: begin it again
            job->state = JobState::pending;
            continue;
        }
        if (job->kind == JobKind::remove) {  // a delete runs again: what it already did is done
            job->state = JobState::pending;
            ngx_atomic_fetch_add(&sh_->jobs_pending, 1);
            continue;
        }
        if (job->kind != JobKind::fit) {  // an export or import a dead owner began
            // (collect_orphans frees it if nobody waits any more)
            fail_job_locked(job, 503, "store_unavailable",
                            "The worker that owned the store stopped during the transfer; run it again.");
            continue;
        }
        if (claims->size() == max_jobs) break;
        Claim c;
        c.job = job;
        c.spool_seq = job->spool_seq;
        c.submitter = job->submitter;
        c.version = job->version;
        c.series_id = std::string_view(reinterpret_cast<char *>(job->series_id), job->id_len);
        c.node = find_node(c.series_id, hash_of(c.series_id));
        claims->push_back(std::move(c));
    }
}

void Zone::requeue(const std::vector<Claim> &claims) {
    ZoneLock guard(this);
    for (const Claim &c : claims) {
        if (c.node != nullptr) c.node->reserved = 0;
        c.job->state = JobState::pending;
        c.job->version = 0;
        ngx_atomic_fetch_add(&sh_->jobs_pending, 1);
    }
}

bool Zone::spool_in_use(ngx_pid_t submitter, std::uint64_t spool_seq) {
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs);
         q = ngx_queue_next(q)) {
        Job *job = ngx_queue_data(q, Job, link);
        if (job->kind == JobKind::fit && job->submitter.pid == submitter && job->spool_seq == spool_seq)
            return true;
    }
    return false;
}

bool Zone::has_pending_from(ProcessId submitter, bool owner_gone) {
    ZoneLock guard(this);
    for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs);
         q = ngx_queue_next(q)) {
        Job *job = ngx_queue_data(q, Job, link);
        if (job->submitter != submitter || job->kind != JobKind::fit) continue;
        if (job->state == JobState::pending) return true;
        if (job->state == JobState::committing && owner_gone) return true;
    }
    return false;
}

void Zone::collect_orphans() {
    // Whether a submitter lives is asked of /proc, outside the lock; the
    // submitters beyond the first few wait for the next round.
    std::array<ProcessId, 64> submitters;
    std::size_t n = 0;
    bool abandoned = false;
    {
        ZoneLock guard(this);
        for (ngx_queue_t *q = ngx_queue_head(&sh_->jobs); q != ngx_queue_sentinel(&sh_->jobs) && n < submitters.size();
             q = ngx_queue_next(q)) {
            const Job *job = ngx_queue_data(q, Job, link);
            if (job->state != JobState::done && job->state != JobState::failed) continue;
            if (job->abandoned) abandoned = true;
            else if (std::find(submitters.begin(), submitters.begin() + n, job->submitter) == submitters.begin() + n)
                submitters[n++] = job->submitter;
        }
    }
    std::size_t gone = 0;
    for (std::size_t i = 0; i < n; i++)
        if (!submitters[i].alive()) submitters[gone++] = submitters[i];
    if (gone == 0 && !abandoned) return;
    const auto gone_end = submitters.begin() + gone;
    ZoneLock guard(this);
    ngx_queue_t *q = ngx_queue_head(&sh_->jobs);
    while (q != ngx_queue_sentinel(&sh_->jobs)) {
        Job *job = ngx_queue_data(q, Job, link);
        q = ngx_queue_next(q);
        const bool finished = job->state == JobState::done || job->state == JobState::failed;
        if (finished && (job->abandoned || std::find(submitters.begin(), gone_end, job->submitter) != gone_end))
            free_job_locked(job);
    }
}

void Zone::claim_stats_slot() {
    const ProcessId me = ProcessId::self();
    for (int attempt = 0; attempt < 3; attempt++) {
        std::array<ProcessId, kStatSlots> seen;
        {
            ZoneLock guard(this);
            for (ngx_uint_t i = 0; i < kStatSlots; i++) seen[i] = sh_->stats[i].process;
        }
        // A dead worker's slot first: its requests in flight ended with it.
        ngx_uint_t pick = kStatSlots;
        for (ngx_uint_t i = 0; i < kStatSlots && pick == kStatSlots; i++)
            if (!seen[i].none() && !seen[i].alive()) pick = i;
        for (ngx_uint_t i = 0; i < kStatSlots && pick == kStatSlots; i++)
            if (seen[i].none()) pick = i;
        if (pick == kStatSlots) break;
        bool claimed = false;
        {
            ZoneLock guard(this);
            WorkerStats &w = sh_->stats[pick];
            claimed = w.process == seen[pick];
            if (claimed) {
                w.process = me;
                __atomic_store_n(&w.quiescent, __atomic_load_n(&sh_->epoch, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
                // The counters keep counting; only the gauge of requests in
                // flight is the process's own, and those of a gone one ended.
                __atomic_store_n(&w.predict.in_flight, 0, __ATOMIC_RELAXED);
                __atomic_store_n(&w.fit.in_flight, 0, __ATOMIC_RELAXED);
            }
        }
        if (claimed) {
            stats_slot_ = pick;
            return;
        }
    }
    // Every slot has a live worker (more than kStatSlots of them): share one.
    // The counters are atomic, so nothing is lost; deleted memory is then
    // never freed, since two processes' quiescent points would mix.
    stats_slot_ = static_cast<ngx_uint_t>(me.pid) % kStatSlots;
    ZoneLock guard(this);
    sh_->slots_shared = 1;
}

void Zone::release_stats_slot() {
    if (stats_slot_ >= kStatSlots) return;
    ZoneLock guard(this);
    WorkerStats &w = sh_->stats[stats_slot_];
    if (w.process == ProcessId::self()) {
        // Requests still in flight now end with the process.
        __atomic_store_n(&w.predict.in_flight, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&w.fit.in_flight, 0, __ATOMIC_RELAXED);
        w.process = ProcessId{};
    }
}

bool Zone::load_version(std::string_view series_id, const std::string &image) {
    const std::uint32_t version = image_version(image);
    if (version == 0) return true;
    void *slot;
    {
        ZoneLock guard(this);
        SeriesNode *node = find_node(series_id, hash_of(series_id));
        if (node != nullptr && image_at(node, version) != nullptr) return true;
        slot = ngx_slab_alloc_locked(pool_, image.size());
    }
    if (slot == nullptr) return false;
    // A forest is copied without the lock: the slot is nobody else's yet.
    std::memcpy(slot, image.data(), image.size());
    ZoneLock guard(this);
    SeriesNode *node = find_or_add_node(series_id);
    if (node == nullptr || !ensure_slot(node, version)) {
        ngx_slab_free_locked(pool_, slot);
        return false;
    }
    if (image_at(node, version) != nullptr) {  // loaded meanwhile: the same version
        ngx_slab_free_locked(pool_, slot);
        return true;
    }
    node->versions[version - node->first] = static_cast<const ModelHeader *>(slot);
    node->count++;
    count_version(sh_, *static_cast<const ModelHeader *>(slot));
    if (version > node->latest) {
        if (node->latest == 0) sh_->series_trained++;
        node->latest = version;
    }
    return true;
}

// ---- deletes and retention ----

namespace {

void uncount_version(Shared *sh, const ModelHeader &image) {
    sh->versions_stored--;
    sh->versions_deleted++;
    const auto k = static_cast<std::size_t>(image.kind);
    if (k < kDetectorSlots) {
        sh->kind_versions[k]--;
        sh->kind_bytes[k] -= zone_bytes_of(image.bytes);
    }
}

}  // namespace

void Zone::quiescent() {
    if (stats_slot_ >= kStatSlots) return;
    __atomic_store_n(&sh_->stats[stats_slot_].quiescent, __atomic_load_n(&sh_->epoch, __ATOMIC_ACQUIRE),
                     __ATOMIC_RELEASE);
}

bool Zone::reclaim(std::vector<Retired> *retired) {
    if (retired->empty()) return true;
    // The oldest epoch a live process may still hold something of. Whether a
    // lagging process lives is asked of /proc outside the lock.
    std::array<ProcessId, kStatSlots> lagging;
    std::array<std::uint64_t, kStatSlots> seen;
    std::size_t n = 0;
    std::uint64_t safe;
    {
        ZoneLock guard(this);
        if (sh_->slots_shared) return false;
        safe = sh_->epoch;
        for (ngx_uint_t i = 0; i < kStatSlots; i++) {
            const WorkerStats &w = sh_->stats[i];
            if (w.process.none()) continue;
            const std::uint64_t q = __atomic_load_n(&w.quiescent, __ATOMIC_ACQUIRE);
            if (q < retired->back().epoch) {  // it holds back some of them, if it lives
                lagging[n] = w.process;
                seen[n++] = q;
            }
        }
    }
    for (std::size_t i = 0; i < n; i++)
        if (lagging[i].alive()) safe = std::min(safe, seen[i]);
    std::size_t freed = 0;
    {
        ZoneLock guard(this);
        while (freed < retired->size() && (*retired)[freed].epoch <= safe) ngx_slab_free_locked(pool_, (*retired)[freed++].mem);
    }
    retired->erase(retired->begin(), retired->begin() + freed);
    return retired->empty();
}

Lookup Zone::removable(std::string_view series_id, std::uint32_t version, std::size_t *bound) {
    ZoneLock guard(this);
    if (!sh_->loaded) return Lookup::not_loaded;
    SeriesNode *node = find_node(series_id, hash_of(series_id));
    if (node == nullptr || (node->latest == 0 && node->stream == nullptr)) return Lookup::series_not_found;
    *bound = node->capacity + 2;  // every image, the stream and the node
    if (version != 0 && image_at(node, version) == nullptr) return Lookup::version_not_found;
    return Lookup::found;
}

// Under the lock.
void Zone::unlink_version_locked(SeriesNode *node, std::uint32_t v, std::vector<Retired> *retired) {
    const ModelHeader *image = image_at(node, v);
    if (image == nullptr) return;
    node->versions[v - node->first] = nullptr;
    node->count--;
    uncount_version(sh_, *image);
    retired->push_back(Retired{const_cast<ModelHeader *>(image), retire_epoch_locked()});
}

// Under the lock: the node and its stream leave every list; readers that
// found them before keep reading them until reclaim.
void Zone::unlink_node_locked(SeriesNode *node, std::vector<Retired> *retired) {
    if (StreamSlot *st = node->stream) {
        __atomic_store_n(&st->removed, std::uint8_t{1}, __ATOMIC_RELEASE);
        if (st->prev != nullptr) st->prev->next = st->next;
        else __atomic_store_n(&sh_->streams, st->next, __ATOMIC_RELEASE);
        if (st->next != nullptr) st->next->prev = st->prev;
        sh_->stream_count--;
        const auto k = static_cast<std::size_t>(st->kind());
        if (k < kDetectorSlots) {
            sh_->kind_streams[k]--;
            sh_->kind_stream_bytes[k] -= slab_chunk(sizeof(StreamSlot) + st->bytes);
        }
        __atomic_store_n(&node->stream, static_cast<StreamSlot *>(nullptr), __ATOMIC_RELEASE);
        retired->push_back(Retired{st, retire_epoch_locked()});
    }
    node->removed = 1;
    SeriesNode **p = &sh_->buckets[node->node.key & sh_->bucket_mask];
    while (*p != nullptr && *p != node) p = &(*p)->next;
    if (*p == node) __atomic_store_n(p, node->next, __ATOMIC_RELEASE);  // node->next stays for readers on it
    ngx_rbtree_delete(&sh_->tree, &node->node);
    if (node->in_anomalous) {
        SeriesNode **a = &sh_->anomalous;
        while (*a != nullptr && *a != node) a = &(*a)->next_anomalous;
        if (*a == node) __atomic_store_n(a, node->next_anomalous, __ATOMIC_RELEASE);
    }
    if (node->versions != nullptr) ngx_slab_free_locked(pool_, node->versions);  // read under the lock only
    node->versions = nullptr;
    node->capacity = 0;
    sh_->series_deleted++;
    retired->push_back(Retired{node, retire_epoch_locked()});
}

void Zone::remove(std::string_view series_id, std::uint32_t version, std::vector<Retired> *retired,
                  std::uint32_t *versions, bool *stream) {
    *versions = 0;
    *stream = false;
    ZoneLock guard(this);
    SeriesNode *node = find_node(series_id, hash_of(series_id));
    if (node == nullptr) return;
    const bool had_versions = node->latest != 0;
    if (version != 0) {
        if (image_at(node, version) == nullptr) return;
        unlink_version_locked(node, version, retired);
        *versions = 1;
        compact_locked(node);
    } else {
        for (std::uint32_t i = 0; i < node->capacity; i++)
            if (node->versions[i] != nullptr) {
                unlink_version_locked(node, node->first + i, retired);
                ++*versions;
            }
        node->latest = 0;
        *stream = node->stream != nullptr;
    }
    if (had_versions && node->latest == 0) sh_->series_trained--;
    // A series left with nothing goes, and its id with it.
    if (node->latest == 0 && (version == 0 || node->stream == nullptr)) unlink_node_locked(node, retired);
}

void Zone::past_retention(const std::vector<Claim> &claims, std::uint32_t keep, std::vector<VersionRef> *out) {
    out->clear();
    if (keep == 0) return;
    for (int pass = 0; pass < 2; pass++) {
        std::size_t count = 0;
        {
            ZoneLock guard(this);
            for (std::size_t i = 0; i < claims.size(); i++) {
                const Claim &c = claims[i];
                if (c.fail_status != 0 || c.node == nullptr) continue;
                bool newest = true;  // the series' newest claim speaks for it
                for (std::size_t j = i + 1; j < claims.size() && newest; j++)
                    if (claims[j].node == c.node && claims[j].fail_status == 0) newest = false;
                if (!newest || c.version <= keep) continue;
                const std::uint32_t below = c.version - keep + 1;  // the oldest kept
                for (std::uint32_t v = c.node->first; v < below; v++) {
                    if (image_at(c.node, v) == nullptr) continue;
                    if (pass == 1 && out->size() < out->capacity()) out->emplace_back(c.series_id, v);
                    count++;
                }
            }
        }
        if (pass == 0) out->reserve(count);  // outside the lock; the commit thread alone changes versions
    }
}

void Zone::drop_versions(const std::vector<VersionRef> &versions, std::vector<Retired> *retired) {
    ZoneLock guard(this);
    SeriesNode *node = nullptr;
    for (const VersionRef &v : versions) {
        if (node == nullptr || id_of(node) != v.first) {
            if (node != nullptr) compact_locked(node);
            node = find_node(v.first, hash_of(v.first));
        }
        if (node != nullptr) unlink_version_locked(node, v.second, retired);
    }
    if (node != nullptr) compact_locked(node);
}

Zone::Present Zone::has_version(std::string_view series_id, std::uint32_t version, std::string_view image) {
    ZoneLock guard(this);
    SeriesNode *node = find_node(series_id, hash_of(series_id));
    const ModelHeader *have = node == nullptr ? nullptr : image_at(node, version);
    if (have == nullptr) return Present::absent;
    return have->bytes == image.size() && std::memcmp(have, image.data(), image.size()) == 0 ? Present::same
                                                                                              : Present::conflict;
}

void Zone::set_store_state(StoreState state, const char *error) {
    ZoneLock guard(this);
    sh_->store_state = state;
    copy_text(sh_->store_error, sizeof(sh_->store_error), error != nullptr ? error : "");
}

// ---- streams ----

namespace {

// This process as a stream's lock holder: its pid and the low 32 bits of its
// start time, so that a later process given a dead holder's pid is not
// taken for it.
std::uint64_t my_lock_word() {
    const ProcessId me = ProcessId::self();
    return static_cast<std::uint64_t>(static_cast<std::uint32_t>(me.pid)) << 32 | (me.start & 0xffffffffu);
}

bool holder_alive(std::uint64_t word) {
    const auto pid = static_cast<ngx_pid_t>(word >> 32);
    const std::uint64_t start_low = word & 0xffffffffu;
    if (pid <= 0) return false;
    std::uint64_t start = 0;
    switch (process_start(pid, &start)) {
    case Found::running:
        return start_low == 0 || (start & 0xffffffffu) == start_low;
    case Found::zombie:
        return false;
    case Found::absent:
    case Found::unknown:
        break;
    }
    return kill(pid, 0) == 0 || errno == EPERM;
}

}  // namespace

StreamSlot *Zone::find_stream(std::string_view series_id) {
    SeriesNode *node = find_node(series_id, hash_of(series_id));
    return node == nullptr ? nullptr : __atomic_load_n(&node->stream, __ATOMIC_ACQUIRE);
}

StreamSlot *Zone::create_stream(std::string_view series_id, const StreamParams &params, std::int64_t now_ms) {
    StreamSlot *existing = find_stream(series_id);
    if (existing != nullptr) return existing;
    const std::size_t bytes = stream_state_bytes(params);
    void *mem;
    {
        ZoneLock guard(this);
        mem = ngx_slab_calloc_locked(pool_, sizeof(StreamSlot) + bytes);
    }
    if (mem == nullptr) return nullptr;
    // Made whole before anyone can see it: the state of a large forest is
    // initialised without the zone's lock.
    auto *slot = static_cast<StreamSlot *>(mem);
    slot->bytes = static_cast<std::uint32_t>(bytes);
    init_stream(slot->state(), params, now_ms, hash_of(series_id) * 0x9e3779b97f4a7c15ull + series_id.size());
    return publish_stream(series_id, slot, bytes);
}

StreamSlot *Zone::publish_stream(std::string_view series_id, StreamSlot *slot, std::size_t bytes) {
    ZoneLock guard(this);
    SeriesNode *node = find_or_add_node(series_id);
    if (node == nullptr || node->stream != nullptr) {  // no room, or another worker was first
        ngx_slab_free_locked(pool_, slot);
        return node == nullptr ? nullptr : node->stream;
    }
    slot->series = node;
    slot->next = sh_->streams;
    slot->prev = nullptr;
    if (sh_->streams != nullptr) sh_->streams->prev = slot;
    __atomic_store_n(&node->stream, slot, __ATOMIC_RELEASE);
    __atomic_store_n(&sh_->streams, slot, __ATOMIC_RELEASE);
    sh_->stream_count++;
    const auto k = static_cast<std::size_t>(slot->kind());
    if (k < kDetectorSlots) {
        sh_->kind_streams[k]++;
        sh_->kind_stream_bytes[k] += slab_chunk(sizeof(StreamSlot) + bytes);
    }
    return slot;
}

bool Zone::load_stream(std::string_view series_id, std::string_view state, std::int64_t checkpoint_ms,
                       bool replace) {
    if (StreamSlot *existing = find_stream(series_id)) {
        if (!replace || existing->bytes != state.size()) return true;
        for (int tries = 0; lock_stream(existing, true) != StreamAccess::locked; tries++)
            if (tries == 1000) return true;  // held for seconds: keep the zone's
        std::memcpy(existing->state(), state.data(), state.size());
        existing->checkpoint_ms = checkpoint_ms;
        existing->checkpointed = existing->changes;
        __atomic_store_n(&existing->broken, std::uint8_t{0}, __ATOMIC_RELEASE);
        unlock_stream(existing);
        return true;
    }
    void *mem;
    {
        ZoneLock guard(this);
        mem = ngx_slab_calloc_locked(pool_, sizeof(StreamSlot) + state.size());
    }
    if (mem == nullptr) return false;
    auto *slot = static_cast<StreamSlot *>(mem);
    slot->bytes = static_cast<std::uint32_t>(state.size());
    std::memcpy(slot->state(), state.data(), state.size());
    slot->checkpoint_ms = checkpoint_ms;
    return publish_stream(series_id, slot, state.size()) != nullptr;
}

Zone::StreamAccess Zone::lock_stream(StreamSlot *s, bool even_broken) {
    const std::uint64_t me = my_lock_word();
    // An observe holds the lock for microseconds (a large batch runs in a
    // pool thread): spin a little, then let the caller try again later
    // rather than hold up the event loop.
    for (int spin = 0; spin < 4096; spin++) {
        std::uint64_t holder = __atomic_load_n(&s->lock, __ATOMIC_RELAXED);
        if (holder == 0 &&
            __atomic_compare_exchange_n(&s->lock, &holder, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            break;
        if (spin == 4095) {
            if (holder == 0 || holder_alive(holder)) return StreamAccess::busy;
            // Its holder is gone: take the lock over from it.
            if (!__atomic_compare_exchange_n(&s->lock, &holder, me, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return StreamAccess::busy;
            if (__atomic_load_n(&s->updating, __ATOMIC_RELAXED)) {
                const bool whole = check_stream(std::string_view(reinterpret_cast<const char *>(s->state()), s->bytes)) &&
                                   s->state()->bytes == s->bytes;
                if (!whole) __atomic_store_n(&s->broken, std::uint8_t{1}, __ATOMIC_RELEASE);
                __atomic_store_n(&s->updating, std::uint8_t{0}, __ATOMIC_RELEASE);
            }
            break;
        }
        ngx_cpu_pause();
    }
    if (!even_broken && __atomic_load_n(&s->broken, __ATOMIC_ACQUIRE)) {
        unlock_stream(s);
        return StreamAccess::broken;
    }
    return StreamAccess::locked;
}

StreamSummary Zone::summary_of_stream(const StreamSlot *s) {
    StreamSummary out;
    const StreamHeader *h = s->state();
    out.params = stream_params_of(*h);
    out.points_processed = __atomic_load_n(&h->points_processed, __ATOMIC_RELAXED);
    out.last_timestamp = __atomic_load_n(&h->last_timestamp, __ATOMIC_RELAXED);
    out.created_ms = h->created_ms;
    out.warmup = h->warmup;
    out.checkpoint_ms = __atomic_load_n(&s->checkpoint_ms, __ATOMIC_RELAXED);
    out.state_bytes = s->bytes;
    out.zone_bytes = static_cast<std::uint32_t>(slab_chunk(sizeof(StreamSlot) + s->bytes));
    return out;
}

bool Zone::stream_summary(std::string_view series_id, StreamSummary *out) {
    const StreamSlot *s = find_stream(series_id);
    if (s == nullptr) return false;
    *out = summary_of_stream(s);
    return true;
}

void Zone::stream_counts(std::uint64_t *streams, std::uint64_t *bytes) {
    ZoneLock guard(this);
    for (std::size_t i = 0; i < kDetectorSlots; i++) {
        streams[i] = sh_->kind_streams[i];
        bytes[i] = sh_->kind_stream_bytes[i];
    }
}

}  // namespace anomaly
