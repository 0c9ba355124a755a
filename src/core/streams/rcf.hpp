// rcf: a streaming Random Cut Forest (Guha, Mishra, Roy and Schrijvers,
// "Robust Random Cut Forest Based Anomaly Detection on Streams", ICML 2016).
//
// A point is a shingle: the last `shingle` values of the stream, oldest
// first, so that a change of shape (a pattern that stays within the usual
// range) is as far from the sample as a spike is. Each tree keeps its own
// time-decayed sample of `sample` recent points and a random cut tree over
// it. A point whose newest value has sequence number s (values seen before
// it) gets, in each tree, the key
//   key = -log(u) * exp(-decay * s),   u uniform in (0, 1),
// and each tree keeps the `sample` lowest keys (a max-heap): a later point
// tends to a lower key, so the sample leans to the recent past (a point's
// chance to stay falls by exp(-decay) a point) and the forest follows drift.
// This is the AWS sampler's rule (its log(-log u) - decay * s is the log of
// this key). Besides, a point is evicted once it is about to leave the ring
// of recent values its leaf refers to (below), so no point is older than
// about 7/8 of the ring.
//
// Score: the expected inverse depth at which the point would be cut off,
// as the AWS implementation scores (not the paper's CoDisp). Walking up from
// the leaf the point reaches, each node's box gives the probability
//   p = (sum over dimensions of how far the point lies outside the box)
//       / (sum of the box's sides once it includes the point)
// that a random cut of the node separates the point there, and
//   score = p / (depth + 1) + (1 - p) * score_below,
// started at the leaf with 1 / (depth + 1) (or, for a point equal to the
// leaf's, (1 - m / 2M) / (depth + log2(1 + m)), m the leaf's mass and M the
// tree's). A tree's score is that times log2(1 + M); the forest's the mean
// over trees. A typical point scores about 1, one cut off at the root about
// log2(1 + sample). Chosen over CoDisp because it is an expectation over
// the cuts rather than one draw of them (smoother on noisy series, so one
// threshold serves more of them), and it scores a point without inserting
// it: a retried point (learn = false) costs one walk a tree and writes
// nothing.
//
// Expected value of the newest value: a tree is walked with the newest
// coordinate unknown (as RCF imputes a missing value); at a cut on it, the
// walk takes the child whose box lies nearer (L1) to the known coordinates
// (the heavier on a tie). The expected value is the median over the first
// 11 trees of the newest coordinate of the leaves these walks end on.
//
// State (little-endian, offsets from the first byte, no pointers; 8-byte
// aligned, trivially copyable, updated in place):
//   0     ForestHeader (64 bytes)
//   64    ring: f32 values[ring], value with sequence number s at s % ring
//   ...   trees x Tree (tree_bytes each, a multiple of 8), one after the other:
//     0          TreeHeader (16 bytes)
//     16         Entry[sample]            8 bytes: the sample, a max-heap on
//                key (its top, read for every point, beside the header)
//     ...        (sample - 1) internal nodes, 12 + 8 x shingle bytes each:
//                an Inner, then the node's bounding box as f32 lows then
//                highs (a walk down and back up touches one place a node;
//                leaves have no box: their point is their box)
//     ...        Leaf[sample]             4 bytes
//   A child is a u16: kLeaf | leaf index, or an internal node's index;
//   kNone for none. A leaf holds the ring slot (s % ring) of the newest
//   point that reached it: its point is the `shingle` values ending there.
//   Equal points share one leaf, its mass their count. Nodes have no parent
//   links: a point is found (to delete it) by walking down its cuts, since
//   x[dim] <= cut goes left; the cuts separate the children's boxes exactly.
//   Free nodes form two lists, linked through Inner::left and Leaf::slot.
//
// The random numbers (keys and cuts) come from the caller's u64, advanced
// by splitmix64, so the same seed and values give the same bytes, and a
// state resumed from its checkpoint continues identically.
//
// At the defaults (30 trees of 128 points, shingle 2) a state is 169,808
// bytes: 64 of header, 16,384 of ring (4,096 values) and 30 x 5,112 of trees
// (internal nodes are 3,556 of a tree's 5,112, their boxes 2,032 of those).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/error.hpp"

namespace anomaly {
namespace rcf {

struct Params {
    std::uint32_t trees;    // 1 .. kMaxTrees
    std::uint32_t sample;   // points each tree keeps, kMinSample .. kMaxSample
    std::uint32_t shingle;  // values in one point, 1 .. kMaxShingle
    double decay;           // per point, above 0 and at most 1
};

constexpr std::uint32_t kMaxTrees = 256;
constexpr std::uint32_t kMinSample = 4, kMaxSample = 1024;
constexpr std::uint32_t kMaxShingle = 32;
// Room for the rest of a stream (header, post-processing, recent points)
// within kMaxStreamBytes (4 MB).
constexpr std::size_t kMaxStateBytes = 3u << 20;

constexpr std::uint32_t kMagic = 0x31464352;  // "RCF1"
constexpr std::uint16_t kNone = 0xffff;
constexpr std::uint16_t kLeaf = 0x8000;

struct ForestHeader {
    std::uint32_t magic;     // kMagic
    std::uint32_t trees, sample, shingle;
    double decay;
    std::uint32_t ring;      // values the ring holds, a power of two (ring_size)
    std::uint32_t busy;      // 1 while an update writes: a state left so is damaged
    std::uint64_t values;    // values appended to the ring so far
    std::uint64_t base;      // keys are stored as key * exp(decay * base)
    std::uint32_t tree_bytes;
    std::uint32_t trees_at;  // offset of the first tree
    std::uint32_t ring_at;   // offset of the ring (64)
    std::uint32_t reserved;  // 0
};
static_assert(sizeof(ForestHeader) == 64 && std::is_trivially_copyable<ForestHeader>::value,
              "part of the state format");

struct TreeHeader {
    std::uint16_t root;        // kNone when the tree is empty
    std::uint16_t entries;     // points in the sample
    std::uint16_t free_inner;  // first free internal node, kNone when none
    std::uint16_t free_leaf;   // first free leaf, kNone when none
    std::uint32_t reserved[2]; // 0
};
static_assert(sizeof(TreeHeader) == 16, "part of the state format");

struct Inner {
    float cut;            // x[dim] <= cut: left
    std::uint16_t left, right;
    std::uint16_t mass;   // points below (equal points counted each)
    std::uint8_t dim;     // 0 .. shingle-1
    std::uint8_t reserved;
};
static_assert(sizeof(Inner) == 12, "part of the state format");

struct Leaf {
    std::uint16_t slot;  // ring slot of the point's newest value (free: the next free leaf)
    std::uint16_t mass;  // equal points that reached it, 0 when free
};
static_assert(sizeof(Leaf) == 4, "part of the state format");

struct Entry {
    float key;           // -log(u) * exp(-decay * (s - base)), at most 3.4e38
    std::uint16_t slot;  // s % ring
    std::uint16_t reserved;
};
static_assert(sizeof(Entry) == 8, "part of the state format");

// 30 trees, sample 128, shingle 2, decay 1 / 1024 (rcf.cpp says why).
Params default_params() noexcept;
// 422 invalid_parameter, with a sentence naming the parameter and its range.
Error check_params(const Params &params);
// Values the ring holds: a power of two, at least 32 x sample and 32 x shingle.
std::uint32_t ring_size(const Params &params) noexcept;
// The state's size for checked params, a multiple of 8.
std::size_t state_bytes(const Params &params) noexcept;
// An empty forest (state_bytes(params) bytes, 8-byte aligned, checked params).
void init(void *state, const Params &params) noexcept;

struct Result {
    double score = 0;          // raw, >= 0, about 1 typical (0 before a full shingle)
    bool has_expected = false;
    double expected = 0;       // the newest value the forest expects
    double fill = 0;           // 0..1: how full the trees' samples are
};

// Appends value to the shingle, scores the shingle ending with it against
// the forest, then (learn) offers it to every tree's sample. learn = false:
// scores the same shingle and leaves the state and *rng unchanged (a
// retried point). Before a full shingle exists the score is 0. value is
// finite (beyond +-1e30 it is clamped). The state must pass check().
// Allocates nothing.
Result update(void *state, double value, bool learn, std::uint64_t *rng) noexcept;

// Whether bytes (8-byte aligned) are a whole forest: sizes and params that
// agree, indices in range, each tree's nodes reached once from its root
// with free lists holding the rest, masses equal to the children's, boxes
// equal to the union of the children's, cuts that separate them, every
// sampled point reaching a leaf with its values, keys a heap, every number
// finite, and no update left halfway. Never reads outside bytes, always ends.
bool check(const void *state, std::size_t bytes) noexcept;

// The params a checked state runs with.
Params params_of(const void *state) noexcept;

}  // namespace rcf
}  // namespace anomaly
