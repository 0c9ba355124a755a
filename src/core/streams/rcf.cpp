#include "core/streams/rcf.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>

namespace anomaly {
namespace rcf {

namespace {

// Values are stored as f32; beyond this they are clamped (f32 reaches 3e38,
// and the sides of a box must stay finite).
constexpr double kValueClamp = 1e30;
// Keys are rebased once decay * (values - base) reaches this, so that a new
// key, -log(u) / exp(decay * (values - base)), stays far from f32's least.
constexpr double kRebaseAt = 16;
// Trees whose walks give the expected value: its walks cost more than the
// scores' (they choose by distance where a cut is on the unknown value), and
// the median of 11 leaves is about as good as that of 30 (on a daily sine
// wave with noise of sd 0.3, the mean error is 0.27 against 0.26).
constexpr std::uint32_t kExpectedTrees = 11;
// Where the keys of points that survived many rebases stop growing.
constexpr double kMaxKey = 3.4e38;

std::uint32_t pow2_at_least(std::uint32_t n) {
    std::uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

// An internal node: its Inner, then its box (lows, highs), side by side so
// that a walk down and back up touches one place per node.
constexpr std::size_t node_bytes(std::uint32_t shingle) { return sizeof(Inner) + 2 * shingle * sizeof(float); }

std::size_t tree_bytes_of(std::uint32_t sample, std::uint32_t shingle) {
    const std::size_t bytes = sizeof(TreeHeader) + (sample - 1) * node_bytes(shingle) + sample * sizeof(Leaf) +
                              sample * sizeof(Entry);
    return (bytes + 7) / 8 * 8;
}

bool valid(const Params &p) {
    if (p.trees < 1 || p.trees > kMaxTrees) return false;
    if (p.sample < kMinSample || p.sample > kMaxSample) return false;
    if (p.shingle < 1 || p.shingle > kMaxShingle) return false;
    if (!(p.decay > 0 && p.decay <= 1)) return false;
    return state_bytes(p) <= kMaxStateBytes;
}

// splitmix64: the caller's u64 is the whole generator.
std::uint64_t next(std::uint64_t *rng) {
    std::uint64_t z = (*rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Uniform in (0, 1), never 0 nor 1, so that -log u is finite and above 0.
double unit(std::uint64_t *rng) { return (static_cast<double>(next(rng) >> 11) + 0.5) * 0x1.0p-53; }

// Where the parts of a forest are, for one call (nothing here is stored).
// D: the shingle when known at compile time (the common ones, so that the
// loops over a point's values unroll), 0 for any.
template <std::uint32_t D>
struct Forest {
    unsigned char *base;
    ForestHeader *h;
    float *ring;
    std::uint32_t trees, sample, shingle, mask;

    explicit Forest(void *state)
        : base(static_cast<unsigned char *>(state)), h(reinterpret_cast<ForestHeader *>(state)),
          ring(reinterpret_cast<float *>(base + h->ring_at)), trees(h->trees), sample(h->sample),
          shingle(h->shingle), mask(h->ring - 1) {}

    std::uint32_t dims() const { return D ? D : shingle; }
    // The point whose newest value is in slot: `shingle` values, oldest first.
    void point(std::uint32_t slot, float *out) const {
        const std::uint32_t first = slot - (dims() - 1);
        for (std::uint32_t k = 0; k < dims(); k++) out[k] = ring[(first + k) & mask];
    }
};

template <std::uint32_t D>
struct Tree {
    TreeHeader *h;
    unsigned char *nodes;  // internal nodes: an Inner, then its box
    Leaf *leaf;
    Entry *entry;
    std::uint32_t dims;

    Tree(const Forest<D> &f, std::uint32_t t) {
        unsigned char *at = f.base + f.h->trees_at + static_cast<std::size_t>(t) * f.h->tree_bytes;
        dims = f.dims();
        h = reinterpret_cast<TreeHeader *>(at);
        entry = reinterpret_cast<Entry *>(at + sizeof(TreeHeader));
        nodes = at + sizeof(TreeHeader) + f.sample * sizeof(Entry);
        leaf = reinterpret_cast<Leaf *>(nodes + (f.sample - 1) * stride());
    }
    std::size_t stride() const { return node_bytes(D ? D : dims); }
    Inner &in(std::uint32_t i) const { return *reinterpret_cast<Inner *>(nodes + i * stride()); }
    float *lo(std::uint32_t i) const { return reinterpret_cast<float *>(nodes + i * stride() + sizeof(Inner)); }
    float *hi(std::uint32_t i) const { return lo(i) + (D ? D : dims); }
    std::uint32_t mass(std::uint16_t child) const {
        return (child & kLeaf) ? leaf[child & ~kLeaf].mass : in(child).mass;
    }
};

// The child of in that x goes to. As a load at a computed offset rather
// than ?: (which the compiler makes a branch, and so would it a mask): where a point goes is news to the branch
// predictor, most of all along the paths that learning has just changed.
inline std::uint16_t child_for(const Inner &in, const float *x) {
    static_assert(offsetof(Inner, right) == offsetof(Inner, left) + 2, "left, then right");
    std::uint16_t child;
    std::memcpy(&child, reinterpret_cast<const unsigned char *>(&in) + offsetof(Inner, left) + 2 * (x[in.dim] > in.cut), 2);
    return child;
}

bool equal(const float *a, const float *b, std::uint32_t n) {
    for (std::uint32_t k = 0; k < n; k++)
        if (a[k] != b[k]) return false;
    return true;
}

// The box of a child: its cached box, or a leaf's point.
template <std::uint32_t D>
void child_box(const Forest<D> &f, const Tree<D> &t, std::uint16_t child, float *lo, float *hi) {
    if (child & kLeaf) {
        f.point(t.leaf[child & ~kLeaf].slot, lo);
        std::memcpy(hi, lo, f.dims() * sizeof(float));
    } else {
        std::memcpy(lo, t.lo(child), f.dims() * sizeof(float));
        std::memcpy(hi, t.hi(child), f.dims() * sizeof(float));
    }
}

// Recomputes node's box from its children; false when it did not change.
template <std::uint32_t D>
bool refresh_box(const Forest<D> &f, const Tree<D> &t, std::uint16_t node) {
    const std::uint32_t d = f.dims();
    float lo[2 * kMaxShingle], hi[2 * kMaxShingle];
    child_box(f, t, t.in(node).left, lo, hi);
    child_box(f, t, t.in(node).right, lo + d, hi + d);
    bool changed = false;
    float *l = t.lo(node), *h = t.hi(node);
    for (std::uint32_t k = 0; k < d; k++) {
        const float a = std::min(lo[k], lo[d + k]), b = std::max(hi[k], hi[d + k]);
        changed |= a != l[k] || b != h[k];
        l[k] = a;
        h[k] = b;
    }
    return changed;
}

template <std::uint32_t D>
void replace_child(Tree<D> &t, std::uint16_t parent, std::uint16_t old_child, std::uint16_t new_child) {
    if (parent == kNone) t.h->root = new_child;
    else if (t.in(parent).left == old_child) t.in(parent).left = new_child;
    else t.in(parent).right = new_child;
}

template <std::uint32_t D>
std::uint16_t new_leaf(Tree<D> &t, std::uint32_t slot) {
    const std::uint16_t i = t.h->free_leaf;
    t.h->free_leaf = t.leaf[i].slot;
    t.leaf[i].slot = static_cast<std::uint16_t>(slot);
    t.leaf[i].mass = 1;
    return i;
}

template <std::uint32_t D>
void free_leaf(Tree<D> &t, std::uint16_t i) {
    t.leaf[i].slot = t.h->free_leaf;
    t.leaf[i].mass = 0;
    t.h->free_leaf = i;
}

template <std::uint32_t D>
void free_inner(Tree<D> &t, std::uint16_t i) {
    t.in(i) = Inner{0, t.h->free_inner, kNone, 0, 0, 0};
    t.h->free_inner = i;
}

// Inserts point x (newest value in slot) as the paper does: at each node,
// a cut drawn in the box grown to include x; if it separates x from the
// node's box, x becomes a leaf beside the node there, else x goes on down
// the node's own cut (and the node's box and mass grow).
template <std::uint32_t D>
void insert(const Forest<D> &f, Tree<D> &t, const float *x, std::uint32_t slot, std::uint64_t *rng) {
    const std::uint32_t d = f.dims();
    if (t.h->root == kNone) {
        t.h->root = static_cast<std::uint16_t>(kLeaf | new_leaf(t, slot));
        return;
    }
    std::uint16_t parent = kNone, node = t.h->root;
    float lo[kMaxShingle], hi[kMaxShingle];
    for (std::uint32_t depth = 0; depth < f.sample; depth++) {
        if (node & kLeaf) {
            Leaf &l = t.leaf[node & ~kLeaf];
            f.point(l.slot, lo);
            if (equal(lo, x, d)) {
                l.mass++;
                l.slot = static_cast<std::uint16_t>(slot);  // the newest copy: the last to leave the ring
                return;
            }
            std::memcpy(hi, lo, d * sizeof(float));
        } else {
            std::memcpy(lo, t.lo(node), d * sizeof(float));
            std::memcpy(hi, t.hi(node), d * sizeof(float));
        }
        // Inside the node's box, no cut of the box can separate x: down
        // the node's cut without a draw.
        bool inside = true;
        for (std::uint32_t k = 0; k < d; k++) inside &= lo[k] <= x[k] && x[k] <= hi[k];
        if (inside && !(node & kLeaf)) {
            Inner &in = t.in(node);
            in.mass++;
            parent = node;
            node = child_for(in, x);
            continue;
        }
        double total = 0;
        for (std::uint32_t k = 0; k < d; k++)
            total += static_cast<double>(std::max(hi[k], x[k])) - std::min(lo[k], x[k]);
        double r = unit(rng) * total;
        std::uint32_t dim = d;
        for (std::uint32_t k = 0; k < d; k++) {
            const double side = static_cast<double>(std::max(hi[k], x[k])) - std::min(lo[k], x[k]);
            if (side <= 0) continue;
            dim = k;
            if (r < side) break;
            r -= side;
        }
        if (dim == d) return;  // x equals a box of positive size: cannot be (a damaged state)
        const float low = std::min(lo[dim], x[dim]), high = std::max(hi[dim], x[dim]);
        float cut = static_cast<float>(low + std::min(r, static_cast<double>(high) - low));
        // low <= cut < high, so that the cut has x and the box on two sides.
        if (!(cut < high)) cut = std::nextafter(high, low);
        if (cut < low) cut = low;
        const bool separates = (x[dim] < lo[dim] && cut < lo[dim]) || (x[dim] > hi[dim] && cut >= hi[dim]);
        if (separates) {
            const std::uint16_t leaf = static_cast<std::uint16_t>(kLeaf | new_leaf(t, slot));
            const std::uint16_t n = t.h->free_inner;
            t.h->free_inner = t.in(n).left;
            const bool x_left = x[dim] <= cut;
            t.in(n) = Inner{cut, x_left ? leaf : node, x_left ? node : leaf,
                               static_cast<std::uint16_t>(t.mass(node) + 1), static_cast<std::uint8_t>(dim), 0};
            float *nl = t.lo(n), *nh = t.hi(n);
            for (std::uint32_t k = 0; k < d; k++) {
                nl[k] = std::min(lo[k], x[k]);
                nh[k] = std::max(hi[k], x[k]);
            }
            replace_child(t, parent, node, n);
            return;
        }
        if (node & kLeaf) return;  // a leaf always separates (cannot be reached)
        Inner &in = t.in(node);
        in.mass++;
        float *nl = t.lo(node), *nh = t.hi(node);
        for (std::uint32_t k = 0; k < d; k++) {
            nl[k] = std::min(nl[k], x[k]);
            nh[k] = std::max(nh[k], x[k]);
        }
        parent = node;
        node = child_for(in, x);
    }
}

// Removes one copy of the point whose newest value is in slot: found by
// walking down its cuts. A leaf left empty goes, with its parent (the
// sibling takes the parent's place), and the boxes above shrink.
template <std::uint32_t D>
void remove(const Forest<D> &f, Tree<D> &t, std::uint32_t slot) {
    const std::uint32_t d = f.dims();
    float x[kMaxShingle], p[kMaxShingle];
    f.point(slot, x);
    std::uint16_t path[kMaxSample];
    std::uint32_t depth = 0;
    std::uint16_t node = t.h->root;
    while (node != kNone && !(node & kLeaf) && depth < f.sample) {
        path[depth++] = node;
        node = child_for(t.in(node), x);
    }
    if (node == kNone || !(node & kLeaf)) return;  // a damaged state
    Leaf &l = t.leaf[node & ~kLeaf];
    f.point(l.slot, p);
    if (!equal(p, x, d)) return;
    for (std::uint32_t i = 0; i < depth; i++) t.in(path[i]).mass--;
    if (--l.mass > 0) return;  // an equal point remains: no box changes
    free_leaf(t, node & ~kLeaf);
    if (depth == 0) {
        t.h->root = kNone;
        return;
    }
    const std::uint16_t parent = path[--depth];
    const Inner &pi = t.in(parent);
    const std::uint16_t sibling = pi.left == node ? pi.right : pi.left;
    replace_child(t, depth > 0 ? path[depth - 1] : kNone, parent, sibling);
    free_inner(t, parent);
    while (depth > 0 && refresh_box(f, t, path[depth - 1])) depth--;
}

// The sample as a max-heap on key: the root is the next to go.
void sift_down(Entry *e, std::uint32_t n, std::uint32_t i) {
    for (;;) {
        std::uint32_t top = i;
        const std::uint32_t a = 2 * i + 1, b = a + 1;
        if (a < n && e[a].key > e[top].key) top = a;
        if (b < n && e[b].key > e[top].key) top = b;
        if (top == i) return;
        std::swap(e[i], e[top]);
        i = top;
    }
}

void sift_up(Entry *e, std::uint32_t i) {
    while (i > 0) {
        const std::uint32_t up = (i - 1) / 2;
        if (!(e[i].key > e[up].key)) return;
        std::swap(e[i], e[up]);
        i = up;
    }
}

// Evicts the entry at i from the sample and its point from the tree.
template <std::uint32_t D>
void evict(const Forest<D> &f, Tree<D> &t, std::uint32_t i) {
    const std::uint32_t slot = t.entry[i].slot;
    const std::uint32_t n = --t.h->entries;
    if (i != n) {
        t.entry[i] = t.entry[n];
        sift_down(t.entry, n, i);
        sift_up(t.entry, i);
    }
    t.entry[n] = Entry{0, 0, 0};
    remove(f, t, slot);
}

// Offers point x to the tree's sample with key; inserts it if taken.
template <std::uint32_t D>
void offer(const Forest<D> &f, Tree<D> &t, const float *x, std::uint32_t slot, float key, std::uint64_t *rng) {
    if (t.h->entries >= f.sample) {
        if (!(key < t.entry[0].key)) return;
        evict(f, t, 0);
    }
    const std::uint32_t n = t.h->entries++;
    t.entry[n] = Entry{key, static_cast<std::uint16_t>(slot), 0};
    sift_up(t.entry, n);
    insert(f, t, x, slot, rng);
}

// The longest a point may stay, in values after its newest one, so that the
// ring still holds all its values until the next sweep (every ring / 8
// values) evicts it.
std::uint32_t max_age_at_sweep(const ForestHeader &h) { return h.ring - h.ring / 8 - h.shingle; }

// Evicts the points that would outlive their values in the ring. Runs
// before the value with sequence number h.values (a multiple of ring / 8)
// is written.
template <std::uint32_t D>
void sweep(const Forest<D> &f) {
    const std::uint32_t limit = max_age_at_sweep(*f.h);
    const std::uint32_t newest = static_cast<std::uint32_t>(f.h->values - 1) & f.mask;
    for (std::uint32_t ti = 0; ti < f.trees; ti++) {
        Tree<D> t(f, ti);
        // The points kept move to the front, then the heap is rebuilt:
        // evicting one at a time would move unvisited entries behind the scan.
        std::uint32_t kept = 0;
        const std::uint32_t n = t.h->entries;
        for (std::uint32_t i = 0; i < n; i++) {
            if (((newest - t.entry[i].slot) & f.mask) >= limit) remove(f, t, t.entry[i].slot);
            else t.entry[kept++] = t.entry[i];
        }
        if (kept == n) continue;
        for (std::uint32_t i = kept; i < n; i++) t.entry[i] = Entry{0, 0, 0};
        t.h->entries = static_cast<std::uint16_t>(kept);
        for (std::uint32_t i = kept / 2; i-- > 0;) sift_down(t.entry, kept, i);
    }
}

// The score of x against one tree (rcf.hpp), before the factor
// log2(1 + mass), and the tree's mass.
// *unknown: the first node of x's path that cuts the newest coordinate
// (or its leaf), where a walk with that coordinate unknown leaves the path.
template <std::uint32_t D>
double tree_score(const Forest<D> &f, const Tree<D> &t, const float *x, double *mass, std::uint16_t *unknown) {
    const std::uint32_t d = f.dims();
    std::uint16_t path[kMaxSample];
    std::uint32_t depth = 0;
    std::uint16_t node = t.h->root;
    *mass = 0;
    *unknown = kNone;
    if (node == kNone) return 0;
    while (!(node & kLeaf) && depth < f.sample) {
        path[depth++] = node;
        if (t.in(node).dim == d - 1 && *unknown == kNone) *unknown = node;
        node = child_for(t.in(node), x);
    }
    if (!(node & kLeaf)) return 0;
    if (*unknown == kNone) *unknown = node;
    const double total = t.mass(t.h->root);
    const Leaf &l = t.leaf[node & ~kLeaf];
    float p[kMaxShingle];
    f.point(l.slot, p);
    double score = equal(p, x, d) ? (1 - l.mass / (2 * total)) / (depth + std::log2(1.0 + l.mass)) : 1.0 / (depth + 1);
    while (depth > 0) {
        const std::uint16_t n = path[--depth];
        const float *lo = t.lo(n), *hi = t.hi(n);
        // In f32 without branches (values are clamped to 1e30: no overflow).
        float outside = 0, sides = 0;
        for (std::uint32_t k = 0; k < d; k++) {
            const float out = std::max(std::max(lo[k] - x[k], x[k] - hi[k]), 0.0f);
            outside += out;
            sides += hi[k] - lo[k] + out;
        }
        // Inside this box, x is inside every box above it too (they hold
        // this one): nothing above can cut it off.
        if (outside == 0) break;
        const double cut_here = static_cast<double>(outside) / sides;
        score = cut_here / (depth + 1) + (1 - cut_here) * score;
    }
    *mass = total;
    return score;
}

// L1 distance of the known coordinates (all but the last) to a child's box.
template <std::uint32_t D>
double known_distance(const Forest<D> &f, const Tree<D> &t, std::uint16_t child, const float *x) {
    double gap = 0;
    if (child & kLeaf) {
        const std::uint32_t first = t.leaf[child & ~kLeaf].slot - (f.dims() - 1);
        for (std::uint32_t k = 0; k + 1 < f.dims(); k++) gap += std::fabs(static_cast<double>(x[k]) - f.ring[(first + k) & f.mask]);
        return gap;
    }
    const float *lo = t.lo(child), *hi = t.hi(child);
    for (std::uint32_t k = 0; k + 1 < f.dims(); k++)
        gap += std::max(std::max(lo[k] - x[k], x[k] - hi[k]), 0.0f);
    return gap;
}

// The newest coordinate of the leaf a walk with it unknown ends on, from
// node (where the walk leaves x's path: above, the two agree).
template <std::uint32_t D>
bool tree_expected(const Forest<D> &f, const Tree<D> &t, const float *x, std::uint16_t node, float *out) {
    const std::uint32_t last = f.dims() - 1;
    if (node == kNone) return false;
    for (std::uint32_t depth = 0; !(node & kLeaf); depth++) {
        if (depth >= f.sample) return false;
        const Inner &in = t.in(node);
        if (in.dim != last) {
            node = child_for(in, x);
            continue;
        }
        const double a = known_distance(f, t, in.left, x), b = known_distance(f, t, in.right, x);
        node = a < b || (a == b && t.mass(in.left) >= t.mass(in.right)) ? in.left : in.right;
    }
    *out = f.ring[t.leaf[node & ~kLeaf].slot];  // the newest value of the leaf's point
    return true;
}

// The parts of a tree that check() reads: its position in the bytes.
struct TreeView {
    const TreeHeader *h;
    const unsigned char *nodes;
    std::size_t stride;
    const Leaf *leaf;
    const Entry *entry;
    const Inner &in(std::uint32_t i) const { return *reinterpret_cast<const Inner *>(nodes + i * stride); }
    const float *lo(std::uint32_t i) const { return reinterpret_cast<const float *>(nodes + i * stride + sizeof(Inner)); }
};

}  // namespace

Params default_params() noexcept {
    // Chosen on the 28 NAB series of nab-dev as a whole (each raw score
    // against one threshold for all): 30 trees, 128 points a tree and
    // decay 1/1024 (a sample's mean age is about 1,000 points, 3.5 days of
    // 5-minute data; the ring of 4,096 values caps it at about 3,500). A
    // shingle of 2 scored best there: 4 and 8 spread one spike over 4 or 8
    // shingles and make every turn of a daily pattern look new (about 34
    // and 27 against 51), while 2 still sees a change of slope, which 1 does
    // not. 30 trees instead of 50 cost little there (51 against 49 for 40)
    // and keep an update within a few microseconds.
    return Params{30, 128, 2, 1.0 / 1024};
}

Error check_params(const Params &p) {
    if (p.trees < 1 || p.trees > kMaxTrees)
        return make_error(422, "invalid_parameter",
                          "trees must be a whole number from 1 to " + std::to_string(kMaxTrees) + ", not " +
                              std::to_string(p.trees) + ".");
    if (p.sample < kMinSample || p.sample > kMaxSample)
        return make_error(422, "invalid_parameter",
                          "sample must be a whole number from " + std::to_string(kMinSample) + " to " +
                              std::to_string(kMaxSample) + ", not " + std::to_string(p.sample) + ".");
    if (p.shingle < 1 || p.shingle > kMaxShingle)
        return make_error(422, "invalid_parameter",
                          "shingle must be a whole number from 1 to " + std::to_string(kMaxShingle) + ", not " +
                              std::to_string(p.shingle) + ".");
    if (!(p.decay > 0 && p.decay <= 1))
        return make_error(422, "invalid_parameter", "decay must be a number above 0 and at most 1, such as 0.001.");
    const std::size_t bytes = state_bytes(p);
    if (bytes > kMaxStateBytes)
        return make_error(422, "invalid_parameter",
                          "trees x sample x shingle is too large: the forest would take " + std::to_string(bytes) +
                              " bytes, at most " + std::to_string(kMaxStateBytes) + ".");
    return Error();
}

std::uint32_t ring_size(const Params &p) noexcept {
    return pow2_at_least(std::max(std::max(32 * p.sample, 32 * p.shingle), 64u));
}

std::size_t state_bytes(const Params &p) noexcept {
    return sizeof(ForestHeader) + static_cast<std::size_t>(ring_size(p)) * sizeof(float) +
           static_cast<std::size_t>(p.trees) * tree_bytes_of(p.sample, p.shingle);
}

void init(void *state, const Params &p) noexcept {
    std::memset(state, 0, state_bytes(p));
    auto *h = static_cast<ForestHeader *>(state);
    h->magic = kMagic;
    h->trees = p.trees;
    h->sample = p.sample;
    h->shingle = p.shingle;
    h->decay = p.decay;
    h->ring = ring_size(p);
    h->ring_at = sizeof(ForestHeader);
    h->trees_at = static_cast<std::uint32_t>(sizeof(ForestHeader) + h->ring * sizeof(float));
    h->tree_bytes = static_cast<std::uint32_t>(tree_bytes_of(p.sample, p.shingle));
    Forest<0> f(state);
    for (std::uint32_t ti = 0; ti < f.trees; ti++) {
        Tree<0> t(f, ti);
        t.h->root = kNone;
        t.h->free_inner = f.sample > 1 ? 0 : kNone;
        t.h->free_leaf = 0;
        for (std::uint32_t i = 0; i + 1 < f.sample; i++)
            t.in(i) = Inner{0, static_cast<std::uint16_t>(i + 2 < f.sample ? i + 1 : kNone), kNone, 0, 0, 0};
        for (std::uint32_t i = 0; i < f.sample; i++)
            t.leaf[i] = Leaf{static_cast<std::uint16_t>(i + 1 < f.sample ? i + 1 : kNone), 0};
    }
}

Params params_of(const void *state) noexcept {
    const auto *h = static_cast<const ForestHeader *>(state);
    return Params{h->trees, h->sample, h->shingle, h->decay};
}

namespace {

template <std::uint32_t D>
Result run(void *state, double value, bool learn, std::uint64_t *rng) noexcept {
    Forest<D> f(state);
    ForestHeader &h = *f.h;
    const std::uint32_t d = f.dims();
    const float v = static_cast<float>(std::fmin(std::fmax(value, -kValueClamp), kValueClamp));
    Result r;
    float x[kMaxShingle];
    const bool full = h.values + 1 >= d;
    if (full) {
        // The shingle ending with v: the d - 1 newest values in the ring, then v.
        for (std::uint32_t k = 0; k + 1 < d; k++)
            x[k] = f.ring[static_cast<std::uint32_t>(h.values - (d - 1) + k) & f.mask];
        x[d - 1] = v;
        double sum = 0, entries = 0, norm_mass = 0, norm = 0;
        float expected[kExpectedTrees];
        std::uint32_t answers = 0;
        for (std::uint32_t ti = 0; ti < f.trees; ti++) {
            const Tree<D> t(f, ti);
            double mass;
            std::uint16_t unknown;
            const double score = tree_score(f, t, x, &mass, &unknown);
            if (mass != norm_mass) {  // the trees are mostly full: one log for all
                norm_mass = mass;
                norm = std::log2(1 + mass);
            }
            sum += score * norm;
            entries += mass;
            if (ti < kExpectedTrees && tree_expected(f, t, x, unknown, &expected[answers])) answers++;
        }
        r.score = sum / f.trees;
        r.fill = entries / (static_cast<double>(f.trees) * f.sample);
        if (answers > 0) {
            r.has_expected = true;
            std::nth_element(expected, expected + answers / 2, expected + answers);
            r.expected = expected[answers / 2];
        }
    }
    if (!learn) return r;

    // Marked busy while writing, so that a state whose writer died halfway
    // fails check(). The fences keep the compiler from moving the writes
    // across the mark (x86 keeps stores in order; a killed process's stores
    // reach memory).
    h.busy = 1;
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (h.decay * static_cast<double>(h.values - h.base) >= kRebaseAt) {
        const double grow = std::exp(h.decay * static_cast<double>(h.values - h.base));
        for (std::uint32_t ti = 0; ti < f.trees; ti++) {
            Tree<D> t(f, ti);
            // Monotone, so the heap stays a heap; the very old saturate.
            for (std::uint32_t i = 0; i < t.h->entries; i++)
                t.entry[i].key = static_cast<float>(std::min(t.entry[i].key * grow, kMaxKey));
        }
        h.base = h.values;
    }
    if (h.values > 0 && (h.values & (h.ring / 8 - 1)) == 0) sweep(f);
    const std::uint32_t slot = static_cast<std::uint32_t>(h.values) & f.mask;
    f.ring[slot] = v;
    const double grow = std::exp(h.decay * static_cast<double>(h.values - h.base));
    h.values++;
    if (full) {
        for (std::uint32_t ti = 0; ti < f.trees; ti++) {
            Tree<D> t(f, ti);
            const double u = unit(rng);
            if (t.h->entries >= f.sample) {
                // Taken if its key -log(u) / grow is below the heap's top.
                // Most are told apart by the bounds 1 - u <= -log u <=
                // (1 - u) / u, without the log.
                const double limit = static_cast<double>(t.entry[0].key) * grow;
                if (1 - u >= limit) continue;
                if ((1 - u) / u >= limit && -std::log(u) >= limit) continue;
            }
            offer(f, t, x, slot, static_cast<float>(-std::log(u) / grow), rng);
        }
    }
    std::atomic_signal_fence(std::memory_order_seq_cst);
    h.busy = 0;
    return r;
}

}  // namespace

Result update(void *state, double value, bool learn, std::uint64_t *rng) noexcept {
    switch (static_cast<const ForestHeader *>(state)->shingle) {
    case 1: return run<1>(state, value, learn, rng);
    case 2: return run<2>(state, value, learn, rng);
    case 3: return run<3>(state, value, learn, rng);
    case 4: return run<4>(state, value, learn, rng);
    case 5: return run<5>(state, value, learn, rng);
    case 6: return run<6>(state, value, learn, rng);
    case 8: return run<8>(state, value, learn, rng);
    default: return run<0>(state, value, learn, rng);
    }
}

bool check(const void *state, std::size_t bytes) noexcept {
    if (bytes < sizeof(ForestHeader)) return false;
    const auto *base = static_cast<const unsigned char *>(state);
    ForestHeader h;
    std::memcpy(&h, base, sizeof(h));
    const Params p{h.trees, h.sample, h.shingle, h.decay};
    if (h.magic != kMagic || !valid(p) || h.busy != 0 || h.reserved != 0) return false;
    if (h.ring != ring_size(p) || h.ring_at != sizeof(ForestHeader) ||
        h.trees_at != sizeof(ForestHeader) + h.ring * sizeof(float) ||
        h.tree_bytes != tree_bytes_of(h.sample, h.shingle) || bytes != state_bytes(p))
        return false;
    if (h.base > h.values || !(h.decay * static_cast<double>(h.values - h.base) < kRebaseAt + 1)) return false;
    const std::uint32_t d = h.shingle, s = h.sample, mask = h.ring - 1;
    const auto *ring = reinterpret_cast<const float *>(base + h.ring_at);
    for (std::uint32_t i = 0; i < h.ring; i++)
        if (!std::isfinite(ring[i]) || std::fabs(ring[i]) > static_cast<float>(kValueClamp)) return false;
    // A point's values must all be in the ring, as the sweeps keep them: the
    // last sweep (when values - 1 was a multiple of ring / 8) left no point
    // older than ring - ring / 8 - shingle - 1, and each value since has aged
    // them by one. Nor can a point be older than the first full shingle.
    const std::uint64_t period = h.ring / 8;
    const std::uint64_t since_sweep = h.values == 0 ? 0 : (h.values - 1) % period + 1;
    const std::uint64_t oldest_age =
        std::min<std::uint64_t>(since_sweep + h.ring - period - d - 1, h.values >= d ? h.values - d : 0);
    const std::uint32_t newest = static_cast<std::uint32_t>(h.values - 1) & mask;
    auto slot_ok = [&](std::uint32_t slot) {
        return h.values >= d && slot <= mask && ((newest - slot) & mask) <= oldest_age;
    };
    auto point = [&](std::uint32_t slot, float *out) {
        for (std::uint32_t k = 0; k < d; k++) out[k] = ring[(slot - (d - 1) + k) & mask];
    };

    for (std::uint32_t ti = 0; ti < h.trees; ti++) {
        const unsigned char *at = base + h.trees_at + static_cast<std::size_t>(ti) * h.tree_bytes;
        TreeView t;
        t.h = reinterpret_cast<const TreeHeader *>(at);
        t.entry = reinterpret_cast<const Entry *>(at + sizeof(TreeHeader));
        t.nodes = at + sizeof(TreeHeader) + s * sizeof(Entry);
        t.stride = node_bytes(d);
        t.leaf = reinterpret_cast<const Leaf *>(t.nodes + (s - 1) * t.stride);
        const TreeHeader &th = *t.h;
        if (th.reserved[0] || th.reserved[1] || th.entries > s) return false;
        if ((th.root == kNone) != (th.entries == 0)) return false;
        auto child_ok = [&](std::uint16_t c) { return (c & kLeaf) ? (c & ~kLeaf) < s : c < s - 1; };

        // Every node reached once from the root: a walk with a visited mark
        // and a stack that cannot outgrow the nodes.
        unsigned char seen_inner[kMaxSample] = {}, seen_leaf[kMaxSample] = {};
        std::uint16_t stack[2 * kMaxSample];
        std::uint32_t top = 0, inner_used = 0, leaf_used = 0, leaf_mass = 0;
        if (th.root != kNone) {
            if (!child_ok(th.root)) return false;
            stack[top++] = th.root;
        }
        while (top > 0) {
            const std::uint16_t c = stack[--top];
            if (c & kLeaf) {
                const std::uint32_t i = c & ~kLeaf;
                if (seen_leaf[i]) return false;
                seen_leaf[i] = 1;
                leaf_used++;
                if (t.leaf[i].mass < 1 || !slot_ok(t.leaf[i].slot)) return false;
                leaf_mass += t.leaf[i].mass;
                continue;
            }
            if (seen_inner[c]) return false;
            seen_inner[c] = 1;
            inner_used++;
            const Inner &in = t.in(c);
            if (in.dim >= d || in.reserved != 0 || !std::isfinite(in.cut) || !child_ok(in.left) ||
                !child_ok(in.right))
                return false;
            stack[top++] = in.left;  // top <= nodes reached + 2 <= 2 * sample
            stack[top++] = in.right;
        }
        if (leaf_mass != th.entries || (leaf_used > 0 && inner_used != leaf_used - 1)) return false;

        // Masses, boxes and cuts against the children.
        auto get_box = [&](std::uint16_t c, float *lo, float *hi) {
            if (c & kLeaf) {
                point(t.leaf[c & ~kLeaf].slot, lo);
                std::memcpy(hi, lo, d * sizeof(float));
            } else {
                std::memcpy(lo, t.lo(c), d * sizeof(float));
                std::memcpy(hi, t.lo(c) + d, d * sizeof(float));
            }
        };
        auto mass_of = [&](std::uint16_t c) -> std::uint32_t {
            return (c & kLeaf) ? t.leaf[c & ~kLeaf].mass : t.in(c).mass;
        };
        for (std::uint32_t i = 0; i + 1 < s; i++) {
            if (!seen_inner[i]) continue;
            const Inner &in = t.in(i);
            if (in.mass != mass_of(in.left) + mass_of(in.right)) return false;
            float al[kMaxShingle], ah[kMaxShingle], bl[kMaxShingle], bh[kMaxShingle];
            get_box(in.left, al, ah);
            get_box(in.right, bl, bh);
            const float *lo = t.lo(i), *hi = lo + d;
            for (std::uint32_t k = 0; k < d; k++)
                if (lo[k] != std::min(al[k], bl[k]) || hi[k] != std::max(ah[k], bh[k])) return false;
            if (!(ah[in.dim] <= in.cut && in.cut < bl[in.dim])) return false;
        }

        // The free lists hold exactly the nodes the tree does not.
        std::uint32_t free_count = 0;
        for (std::uint16_t i = th.free_inner; i != kNone; i = t.in(i).left) {
            if (i >= s - 1 || seen_inner[i] || free_count >= s) return false;
            seen_inner[i] = 1;
            free_count++;
        }
        if (inner_used + free_count != s - 1) return false;
        free_count = 0;
        for (std::uint16_t i = th.free_leaf; i != kNone; i = t.leaf[i].slot) {
            if (i >= s || seen_leaf[i] || free_count > s || t.leaf[i].mass != 0) return false;
            seen_leaf[i] = 1;
            free_count++;
        }
        if (leaf_used + free_count != s) return false;

        // The sample: a max-heap of finite keys, each point reaching a leaf
        // that holds its values, as many as the leaf's mass.
        std::uint16_t reached[kMaxSample] = {};
        // The youngest age of a point reaching each leaf. A leaf's slot is
        // no older than that (insert names the newest copy; an evicted one
        // may stay named), so its values outlive every copy in the ring.
        std::uint32_t youngest[kMaxSample];
        std::fill(youngest, youngest + s, ~0u);
        for (std::uint32_t i = 0; i < th.entries; i++) {
            const Entry &e = t.entry[i];
            if (!(e.key >= 0 && e.key <= kMaxKey) || e.reserved != 0 || !slot_ok(e.slot)) return false;
            if (i > 0 && t.entry[(i - 1) / 2].key < e.key) return false;
            float x[kMaxShingle], q[kMaxShingle];
            point(e.slot, x);
            std::uint16_t c = th.root;
            for (std::uint32_t depth = 0; !(c & kLeaf); depth++) {  // the tree is whole: each step goes down
                if (depth >= s) return false;
                c = child_for(t.in(c), x);
            }
            point(t.leaf[c & ~kLeaf].slot, q);
            if (!equal(x, q, d)) return false;
            reached[c & ~kLeaf]++;
            youngest[c & ~kLeaf] = std::min(youngest[c & ~kLeaf], (newest - e.slot) & mask);
        }
        for (std::uint32_t i = 0; i < s; i++)
            if (seen_leaf[i] && t.leaf[i].mass > 0 &&
                (reached[i] != t.leaf[i].mass || ((newest - t.leaf[i].slot) & mask) > youngest[i]))
                return false;
    }
    return true;
}

}  // namespace rcf
}  // namespace anomaly
