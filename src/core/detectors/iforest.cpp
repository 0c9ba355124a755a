#include "core/detectors/iforest.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace anomaly {

namespace {

constexpr std::size_t kLayoutAt = sizeof(ModelHeader);
constexpr std::size_t kOffsetsAt = kLayoutAt + sizeof(ForestLayout);
// A leaf's path length is at most its depth (10 levels at the largest
// sample) plus c(1024) < 13; anything far beyond is damage.
constexpr float kMaxPathLength = 1e4f;
// Scaled features beyond this are as far out as any split can tell.
constexpr double kFeatureClamp = 1e30;
// A point beyond a node's range by more than this many times the mean
// spacing of the node's points is isolated there (iforest.hpp).
constexpr double kRangeMargin = 8;

using Point = std::array<float, kForestFeatures + 1>;  // the last one NaN

std::size_t nodes_at(std::uint32_t trees) { return (kOffsetsAt + 4 * static_cast<std::size_t>(trees) + 7) / 8 * 8; }

const ForestLayout &layout_of(const ModelHeader &image) {
    return *reinterpret_cast<const ForestLayout *>(reinterpret_cast<const unsigned char *>(&image) + kLayoutAt);
}

// splitmix64's finaliser: a good 64-bit mix, for hashing and for seeding.
std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

std::uint64_t bits_of(double d) {
    std::uint64_t u;
    std::memcpy(&u, &d, sizeof(u));
    return u;
}

// xoshiro256** (Blackman and Vigna), seeded by splitmix64.
class Random {
public:
    explicit Random(std::uint64_t seed) {
        for (std::uint64_t &s : s_) {
            seed += 0x9e3779b97f4a7c15ull;
            s = mix(seed);
        }
    }
    std::uint64_t next() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    // Uniform in [0, 1).
    double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    // Uniform in [0, n) (Lemire's multiply and shift; the bias is below 2^-32).
    std::size_t below(std::size_t n) {
        return static_cast<std::size_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4];
};

// The raw features of a point: value, hour of the day, day of the week.
void raw_features(double value, std::int64_t timestamp, double out[kForestFeatures]) {
    std::int64_t day = timestamp / 86400, second = timestamp % 86400;
    if (second < 0) {  // floor division: a predict may send a time before 1970
        second += 86400;
        day -= 1;
    }
    out[0] = value;
    out[1] = static_cast<double>(second) / 3600;
    out[2] = static_cast<double>(((day + 3) % 7 + 7) % 7);  // 1970-01-01 was a Thursday
}

// A point as the trees see it: scaled, clamped, f32. Training and judging
// both come here, so a training point takes the same path in both.
Point scaled_point(const ForestLayout &l, double value, std::int64_t timestamp) {
    double raw[kForestFeatures];
    raw_features(value, timestamp, raw);
    Point p;
    for (std::uint32_t f = 0; f < kForestFeatures; f++) {
        const double x = (raw[f] - l.offset[f]) * l.scale[f];
        // fmax and fmin also turn NaN (inf * 0 of a damaged scale) into a number.
        p[f] = static_cast<float>(std::fmin(std::fmax(x, -kFeatureClamp), kFeatureClamp));
    }
    p[kForestFeatures] = std::numeric_limits<float>::quiet_NaN();  // what a leaf reads
    return p;
}

// The sum of the point's path lengths over all trees: each walk takes
// layout.depth steps without a branch (iforest.hpp), eight trees side by
// side so that their loads overlap instead of each waiting for the last.
// Masks instead of conditionals: the compiler turns ?: on a comparison into
// a branch, mispredicted half the time here. check_iforest guarantees that
// every index stays inside its tree and every walk ends on a leaf; `& 3`
// keeps even an unchecked feature inside p.
double path_sum(const ModelHeader &image, const Point &p) noexcept {
    constexpr std::uint32_t kLanes = 8;
    const auto *base = reinterpret_cast<const unsigned char *>(&image);
    const auto *offsets = reinterpret_cast<const std::uint32_t *>(base + kOffsetsAt);
    const ForestLayout &l = layout_of(image);
    double sum = 0;
    for (std::uint32_t t = 0; t < l.trees; t += kLanes) {
        const std::uint32_t lanes = std::min(kLanes, l.trees - t);
        const ForestNode *tree[kLanes];
        std::uint32_t at[kLanes];
        for (std::uint32_t k = 0; k < kLanes; k++) {
            tree[k] = reinterpret_cast<const ForestNode *>(base + offsets[t + (k < lanes ? k : 0)]);
            at[k] = l.depth;  // the root, after the sinks
        }
        for (std::uint32_t d = 0; d < l.depth; d++) {
#pragma GCC unroll 8
            for (std::uint32_t k = 0; k < kLanes; k++) {
                const ForestNode &n = tree[k][at[k]];
                const float x = p[n.feature & 3];
                const std::uint32_t out = -static_cast<std::uint32_t>(std::fabs(x - n.centre) > n.reach);
                const std::uint32_t right = -static_cast<std::uint32_t>(!(x < n.value));
                const std::uint32_t next = ((at[k] + 1) & ~right) | (n.right & right);
                at[k] = (n.depth & out) | (next & ~out);
            }
        }
        for (std::uint32_t k = 0; k < lanes; k++) sum += tree[k][at[k]].value;
    }
    return sum;
}

double score_of(const ForestLayout &l, double path_sum) noexcept {
    return std::exp2(-path_sum / (static_cast<double>(l.trees) * l.path_norm));
}

// One isolation tree, grown on points[lo, hi) (reordered), appended to nodes
// in preorder.
class TreeBuilder {
public:
    TreeBuilder(std::vector<Point> *points, Random *random, unsigned height_limit)
        : points_(points), random_(random), height_limit_(height_limit) {}

    void grow(std::vector<ForestNode> *nodes) {
        nodes_ = nodes;
        nodes_->clear();
        // The sinks: where a point that leaves a node's range at depth d
        // goes and stays, its path length d + 1.
        for (unsigned d = 0; d < height_limit_; d++)
            nodes_->push_back(ForestNode{static_cast<float>(d + 1), 0, 0, static_cast<std::uint16_t>(d), kForestLeaf,
                                         static_cast<std::uint8_t>(d)});
        grow(0, points_->size(), 0);
    }

private:
    void grow(std::size_t lo, std::size_t hi, unsigned depth) {
        const std::size_t at = nodes_->size();
        nodes_->push_back(
            ForestNode{0, 0, 0, static_cast<std::uint16_t>(at), kForestLeaf, static_cast<std::uint8_t>(depth)});
        const std::size_t n = hi - lo;
        float low[kForestFeatures], high[kForestFeatures];
        std::uint8_t varying[kForestFeatures];
        std::size_t k = 0;
        if (depth < height_limit_ && n > 1) {
            for (std::uint32_t f = 0; f < kForestFeatures; f++) {
                low[f] = high[f] = (*points_)[lo][f];
                for (std::size_t j = lo + 1; j < hi; j++) {
                    low[f] = std::min(low[f], (*points_)[j][f]);
                    high[f] = std::max(high[f], (*points_)[j][f]);
                }
                if (high[f] > low[f]) varying[k++] = static_cast<std::uint8_t>(f);
            }
        }
        if (k == 0) {  // the height limit, one point, or points all alike
            (*nodes_)[at].value = static_cast<float>(depth + forest_path_norm(static_cast<double>(n)));
            return;
        }
        const std::uint8_t f = varying[random_->below(k)];
        const double u = random_->unit();
        // low < split <= high, so that both sides hold a point.
        float split = static_cast<float>(low[f] + u * (static_cast<double>(high[f]) - low[f]));
        if (!(split > low[f])) split = std::nextafter(low[f], high[f]);
        if (split > high[f]) split = high[f];
        const auto begin = points_->begin();
        const auto mid = std::partition(begin + static_cast<std::ptrdiff_t>(lo), begin + static_cast<std::ptrdiff_t>(hi),
                                        [&](const Point &p) { return p[f] < split; });
        const auto m = static_cast<std::size_t>(mid - begin);
        (*nodes_)[at].value = split;
        // The range a point must leave to count as isolated here: the
        // points' own, widened by kRangeMargin times their mean spacing.
        // As a centre and a reach, rounded outwards, so that one comparison
        // tells.
        const double margin = kRangeMargin * (static_cast<double>(high[f]) - low[f]) / static_cast<double>(n);
        const double from = low[f] - margin, to = high[f] + margin;
        const auto centre = static_cast<float>(from + (to - from) / 2);
        auto reach = static_cast<float>(std::max(to - centre, centre - from));
        while (!(std::fabs(low[f] - centre) <= reach && std::fabs(high[f] - centre) <= reach &&
                 std::fabs(split - centre) <= reach))
            reach = std::nextafter(reach, std::numeric_limits<float>::infinity());
        (*nodes_)[at].centre = centre;
        (*nodes_)[at].reach = reach;
        (*nodes_)[at].feature = f;
        grow(lo, m, depth + 1);
        (*nodes_)[at].right = static_cast<std::uint16_t>(nodes_->size());
        grow(m, hi, depth + 1);
    }

    std::vector<Point> *points_;
    Random *random_;
    unsigned height_limit_;
    std::vector<ForestNode> *nodes_ = nullptr;
};

bool finite_layout(const ForestLayout &l) {
    if (!(l.threshold > 0 && l.threshold <= 1) || !(l.typical > 0 && l.typical <= l.threshold)) return false;
    if (!std::isfinite(l.path_norm) || !(l.path_norm > 0)) return false;
    for (std::uint32_t f = 0; f < kForestFeatures; f++)
        if (!std::isfinite(l.offset[f]) || !std::isfinite(l.scale[f]) || !(l.scale[f] >= 0)) return false;
    return true;
}

ForestNode node_at(const unsigned char *tree, std::uint32_t i) {
    ForestNode n;
    std::memcpy(&n, tree + i * sizeof(ForestNode), sizeof(n));
    return n;
}

bool finite_node(const ForestNode &n) {
    return std::isfinite(n.value) && std::isfinite(n.centre) && std::isfinite(n.reach);
}

// The subtree of nodes [begin, end) of a tree, rooted at begin, at depth d:
// a leaf alone, or an inner node whose left subtree fills [begin + 1, right)
// and whose right subtree fills [right, end). So every index stays inside
// the tree, and a walk of `depth` steps from the root ends on a leaf.
// Recursion: at most kForestMaxDepth deep.
bool check_subtree(const unsigned char *tree, std::uint32_t begin, std::uint32_t end, std::uint32_t d,
                   std::uint32_t depth) {
    const ForestNode n = node_at(tree, begin);
    if (n.depth != d || !finite_node(n)) return false;
    if (n.feature == kForestLeaf)
        return end == begin + 1 && n.right == begin && n.centre == 0 && n.reach == 0 && n.value >= 0 &&
               n.value <= kMaxPathLength;
    if (d >= depth || n.feature >= kForestFeatures || !(std::fabs(n.value - n.centre) <= n.reach)) return false;
    if (n.right <= begin + 1 || n.right >= end) return false;
    return check_subtree(tree, begin + 1, n.right, d + 1, depth) && check_subtree(tree, n.right, end, d + 1, depth);
}

// A tree: depth sinks (node d: a leaf, path length d + 1, stepping onto
// itself), then the root's subtree.
bool check_tree(const unsigned char *tree, std::uint32_t count, std::uint32_t depth) {
    if (count <= depth) return false;
    for (std::uint32_t d = 0; d < depth; d++) {
        const ForestNode n = node_at(tree, d);
        if (n.feature != kForestLeaf || n.depth != d || n.right != d || n.centre != 0 || n.reach != 0 ||
            n.value != static_cast<float>(d + 1))
            return false;
    }
    return check_subtree(tree, depth, count, 0, depth);
}

}  // namespace

double forest_path_norm(double n) noexcept {
    if (n <= 1) return 0;
    if (n <= 2) return 1;
    constexpr double kEulerGamma = 0.57721566490153286;
    return 2 * (std::log(n - 1) + kEulerGamma) - 2 * (n - 1) / n;
}

Error train_iforest(const TrainingData &data, const DetectorParams &params, std::string *image) {
    if (params.trees < 1 || params.trees > kForestMaxTrees)
        return make_error(422, "invalid_parameter", "trees must be between 1 and " + std::to_string(kForestMaxTrees) + ".");
    if (params.sample < kForestMinSample || params.sample > kForestMaxSample)
        return make_error(422, "invalid_parameter",
                          "sample must be between " + std::to_string(kForestMinSample) + " and " +
                              std::to_string(kForestMaxSample) + ".");
    if (!(params.contamination > 0 && params.contamination < 0.5))
        return make_error(422, "invalid_parameter", "contamination must be greater than 0 and less than 0.5.");
    const std::size_t n = data.values.size();

    // Scaling: each feature's training minimum and range.
    ForestLayout layout;
    std::memset(&layout, 0, sizeof(layout));
    double low[kForestFeatures], high[kForestFeatures];
    for (std::size_t i = 0; i < n; i++) {
        double raw[kForestFeatures];
        raw_features(data.values[i], data.timestamps[i], raw);
        for (std::uint32_t f = 0; f < kForestFeatures; f++) {
            low[f] = i == 0 ? raw[f] : std::min(low[f], raw[f]);
            high[f] = i == 0 ? raw[f] : std::max(high[f], raw[f]);
        }
    }
    if (n < 2 || !(high[0] > low[0]))
        return make_error(422, "constant_series", "The values are all the same, so nothing could be anomalous.");
    if (!std::isfinite(high[0] - low[0]))
        return make_error(422, "invalid_value", "The values are too large in magnitude: their range is not a finite number.");
    for (std::uint32_t f = 0; f < kForestFeatures; f++) {
        layout.offset[f] = low[f];
        layout.scale[f] = high[f] > low[f] ? 1 / (high[f] - low[f]) : 0;
    }
    std::vector<Point> all(n);
    for (std::size_t i = 0; i < n; i++) all[i] = scaled_point(layout, data.values[i], data.timestamps[i]);

    // The same data and parameters give the same forest.
    std::uint64_t seed = mix(0x69666f7265737431ull ^ n);  // "iforest1"
    seed = mix(seed ^ params.trees);
    seed = mix(seed ^ params.sample);
    seed = mix(seed ^ bits_of(params.contamination));
    for (std::size_t i = 0; i < n; i++) {
        seed = mix(seed ^ bits_of(data.values[i]));
        seed = mix(seed ^ static_cast<std::uint64_t>(data.timestamps[i]));
    }
    Random random(seed);

    const std::size_t sample = std::min<std::size_t>(params.sample, n);
    unsigned height_limit = 0;
    while ((std::size_t{1} << height_limit) < sample) height_limit++;  // ceil(log2(sample))
    layout.path_norm = forest_path_norm(static_cast<double>(sample));
    layout.trees = params.trees;
    layout.depth = height_limit;
    layout.sample = params.sample;
    layout.contamination = params.contamination;

    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; i++) order[i] = i;
    std::vector<Point> points(sample);
    std::vector<ForestNode> tree;
    std::vector<std::uint32_t> offsets(params.trees);
    std::string nodes;
    const std::size_t first = nodes_at(params.trees);
    TreeBuilder builder(&points, &random, height_limit);
    for (std::uint32_t t = 0; t < params.trees; t++) {
        // A partial Fisher-Yates shuffle draws sample points without replacement.
        for (std::size_t j = 0; j < sample; j++) {
            std::swap(order[j], order[j + random.below(n - j)]);
            points[j] = all[order[j]];
        }
        builder.grow(&tree);
        offsets[t] = static_cast<std::uint32_t>(first + nodes.size());
        nodes.append(reinterpret_cast<const char *>(tree.data()), tree.size() * sizeof(ForestNode));
    }
    layout.nodes = static_cast<std::uint32_t>(nodes.size() / sizeof(ForestNode));

    const std::size_t bytes = first + nodes.size();
    if (bytes > kMaxImageBytes)  // not at the limits on trees and sample (33 MB)
        return make_error(422, "invalid_parameter", "trees and sample make a forest too large to keep.");
    image->assign(bytes, '\0');
    const ModelHeader h = new_header(data, params, bytes);
    std::memcpy(&(*image)[0], &h, sizeof(h));
    std::memcpy(&(*image)[kOffsetsAt], offsets.data(), offsets.size() * sizeof(std::uint32_t));
    std::memcpy(&(*image)[first], nodes.data(), nodes.size());

    // The threshold: the training scores' (1 - contamination) quantile,
    // interpolated between neighbours as numpy's percentile does.
    std::memcpy(&(*image)[kLayoutAt], &layout, sizeof(layout));
    std::vector<double> scores(n);
    for (std::size_t i = 0; i < n; i++) scores[i] = score_of(layout, path_sum(header_of(image->data()), all[i]));
    std::sort(scores.begin(), scores.end());
    const double at = (1 - params.contamination) * static_cast<double>(n - 1);
    const auto below = static_cast<std::size_t>(at);
    const std::size_t above = std::min(below + 1, n - 1);
    layout.threshold = scores[below] + (at - static_cast<double>(below)) * (scores[above] - scores[below]);
    layout.typical = scores.front();
    std::memcpy(&(*image)[kLayoutAt], &layout, sizeof(layout));
    if (!finite_layout(layout))  // scores are in (0, 1]; only an error here could fail
        return make_error(422, "invalid_value", "The values could not be summarised by a forest.");
    return Error();
}

bool check_iforest(std::string_view image) noexcept {
    if (image.size() < kOffsetsAt) return false;
    ForestLayout l;
    std::memcpy(&l, image.data() + kLayoutAt, sizeof(l));
    if (l.trees < 1 || l.trees > kForestMaxTrees) return false;
    if (l.sample < kForestMinSample || l.sample > kForestMaxSample) return false;
    if (!(l.contamination > 0 && l.contamination < 0.5)) return false;
    if (!finite_layout(l) || l.depth > kForestMaxDepth) return false;
    const std::size_t first = nodes_at(l.trees);
    if (image.size() < first || (image.size() - first) / sizeof(ForestNode) != l.nodes) return false;
    for (std::size_t at = kOffsetsAt + 4 * static_cast<std::size_t>(l.trees); at < first; at++)
        if (image[at] != 0) return false;
    for (std::uint32_t t = 0; t < l.trees; t++) {
        std::uint32_t begin, end = static_cast<std::uint32_t>(image.size());
        std::memcpy(&begin, image.data() + kOffsetsAt + 4 * t, 4);
        if (t + 1 < l.trees) std::memcpy(&end, image.data() + kOffsetsAt + 4 * (t + 1), 4);
        if (t == 0 && begin != first) return false;
        // Trees follow each other without gaps, each at least one node and
        // at most as many as a u16 index reaches.
        if (begin % 8 != 0 || end % 8 != 0 || end <= begin || end > image.size()) return false;
        const std::size_t count = (end - begin) / sizeof(ForestNode);
        if (count > 65536) return false;
        if (!check_tree(reinterpret_cast<const unsigned char *>(image.data()) + begin,
                        static_cast<std::uint32_t>(count), l.depth))
            return false;
    }
    return true;
}

double forest_anomaly_score(const ForestLayout &l, double s) noexcept {
    double a = 0;
    if (s > l.threshold)
        a = l.threshold < 1 ? 70 + 30 * ((s - l.threshold) / (1 - l.threshold)) : 100;
    else if (s > l.typical)  // then typical < threshold
        a = 70 * ((s - l.typical) / (l.threshold - l.typical));
    return std::min(std::max(a, 0.0), 100.0);
}

void forest_parameters(const ModelHeader &image, std::uint32_t *trees, std::uint32_t *sample,
                       double *contamination) noexcept {
    const ForestLayout &l = layout_of(image);
    *trees = l.trees;
    *sample = l.sample;
    *contamination = l.contamination;
}

Judgement judge_iforest(const ModelHeader &image, double value, std::int64_t timestamp) noexcept {
    const ForestLayout &l = layout_of(image);
    const double s = score_of(l, path_sum(image, scaled_point(l, value, timestamp)));
    Judgement j;
    j.score = s;
    j.anomaly = s > l.threshold;
    j.anomaly_score = forest_anomaly_score(l, s);
    return j;
}

}  // namespace anomaly
