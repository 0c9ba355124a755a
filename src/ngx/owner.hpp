// Store ownership. LevelDB admits one process at a time, so exactly one
// worker (of any generation: old and new workers overlap during a reload)
// holds the store open: the owner. Any worker accepts a fit, validates it in
// a thread, leaves it in a spool file and queues a job in the zone; the owner
// commits every waiting job in one synced WriteBatch (group commit) from a
// thread of its pool, publishes the versions in the zone and wakes the
// submitting workers. When the owner exits or dies, the others notice within
// kOwnerCheck and one of them opens the store; jobs a dead owner left
// half-committed are looked up on disk, so no acknowledged fit is lost.
#pragma once

#include "ngx/ngx.hpp"

#include <cstdint>
#include <string>

#include "ngx/zone.hpp"

namespace anomaly {

struct StoreSettings {
    Zone *zone = nullptr;
    std::string dir;                    // the LevelDB directory (anomaly_store)
    ngx_thread_pool_t *pool = nullptr;  // anomaly_thread_pool
    ngx_msec_t checkpoint = 5000;       // anomaly_checkpoint: streams written at most this often
    std::uint32_t keep_versions = 0;    // anomaly_keep_versions: the newest versions kept a series, 0 all
};

// init_process: opens this worker's wake-up socket and starts competing for
// the store. on_wakeup runs in the event loop when another process says that
// a job of ours finished.
ngx_int_t store_start(ngx_cycle_t *cycle, const StoreSettings &settings, void (*on_wakeup)());
// exit_process: closes the store if this worker owns it.
void store_stop();

// After queueing a job: wakes the owner.
void store_wake_owner();

// A pool task or a wait of this process is about to hold a pointer into the
// zone (an image, a stream) beyond the event handler that found it: what a
// delete unlinks meanwhile is not freed until release_zone().
void hold_zone();
void release_zone();

// Where an export is written for its submitter to send (in the store's spool directory).
std::string export_path(std::uint64_t seq);

// Hands a validated fit over for commit (from a pool thread): the model, its
// encoded plot envelope and training data. In the owner it stays in this
// process's memory; elsewhere it goes to a spool file,
// <store>/spool/<pid>.<seq>, for the owner to read.
bool hand_over(std::uint64_t seq, std::string model, std::string plot_envelope, std::string training_data,
               bool *in_memory, std::string *error);
// Drops what hand_over() kept once the fit is answered, whatever the outcome.
void discard_handed_over(std::uint64_t seq, bool in_memory);
// A number for a spool file name, never used before by any process with this pid.
std::uint64_t next_spool_seq();
std::string spool_path(ngx_pid_t submitter, std::uint64_t seq);

// Lowers the CPU priority of the pool thread running a fit or a commit, so
// that the event loops sharing its core always come first: a 25 MB parse
// must not delay the predictions next to it. Restored when it can be (only
// a privileged worker may raise its priority again).
class BackgroundPriority {
public:
    BackgroundPriority();
    ~BackgroundPriority();
    BackgroundPriority(const BackgroundPriority &) = delete;
    BackgroundPriority &operator=(const BackgroundPriority &) = delete;

private:
    int tid_;
    int previous_;
};

}  // namespace anomaly
