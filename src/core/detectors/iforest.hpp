// iforest: an Isolation Forest (Liu, Ting and Zhou, ICDM 2008) over the
// value, its hour of the day and its day of the week. Points that a few
// random axis-parallel cuts isolate are anomalies: shapes no band describes,
// such as a value normal on weekdays seen on a Sunday. The threshold is the
// training scores' (1 - contamination) quantile.
//
// Features of a point (value, timestamp), each scaled by the training
// minimum and range to about [0, 1] and rounded to f32:
//   0  the value
//   1  the hour of the day, fractional, 0 <= h < 24 (UTC)
//   2  the day of the week, 0 (Monday) .. 6 (Sunday)
//   scaled = f32((x - offset) * scale), scale = 1 / (max - min), or 0 for a
//   feature constant in the training data, which is then never split on.
//
// Training: trees x an isolation tree on min(sample, n) points drawn without
// replacement, grown to ceil(log2(that many)) levels; a node splits on a
// random feature among those its points do not all share, at a uniform point
// between their least and greatest. The random numbers come from a
// xoshiro256** seeded by a hash of the data and the parameters, so the same
// fit gives the same bytes. The path length of x in a tree is the depth of
// its leaf plus c(points in the leaf); the score is
//   s(x) = 2 ^ (-mean path length / c(sample)),  c(n) = 2 H(n-1) - 2 (n-1) / n
// (c(2) = 1, c(1) = 0): near 1 isolated at once, about 0.5 and below typical.
//
// One addition to the paper's trees, a range check: a point further outside
// the range of a node's points on the node's feature than 8 times their mean
// spacing ((max - min) / points) is isolated there, its path length the
// node's depth + 1. Without it a point outside a node's range follows that
// node's extreme points down, so a weekday's value on a Sunday scores like
// Friday's points and a value twice the largest ever seen like the largest
// (on four weeks of weekday/weekend data, both stayed below the 1% threshold).
//
// anomaly = s > threshold. anomaly_score is piecewise linear in s: 0 at the
// lowest training score and below, 70 at the threshold, 100 at s = 1.
//
// Image (after the 48-byte ModelHeader; little-endian, offsets from the
// image's first byte):
//   48   ForestLayout (96 bytes):
//          f64 threshold     the training scores' (1 - contamination) quantile, (0, 1]
//          f64 typical       the lowest training score, (0, threshold]
//          f64 path_norm     c(sample used), > 0
//          f64 offset[3]     per feature
//          f64 scale[3]      per feature, >= 0 (0: never split on)
//          u32 trees
//          u32 nodes         in all trees, sinks included
//          u32 depth         the height limit L (<= 16): every walk takes L steps
//          u32 sample        points drawn for each tree, as the fit asked
//          f64 contamination as the fit asked
//   144  u32 tree_offset[trees], then zero bytes to a multiple of 8
//   ...  each tree's nodes (ForestNode, 16 bytes), tree after tree without
//        gaps: tree t holds (tree_offset[t+1] - tree_offset[t]) / 16 nodes,
//        the last tree runs to header.bytes. In a tree:
//          nodes 0 .. L-1  sinks: node d is a leaf of path length d + 1
//          node L ..       the root, then the tree in preorder
//   ForestNode: f32 value | f32 centre | f32 reach | u16 right | u8 feature | u8 depth
//     inner node: feature 0..2, value the split (on the scaled feature):
//                 |x - centre| > reach: to sink `depth` (isolated here);
//                 else x < value: to the next node (the left child);
//                 else to node `right` of the same tree
//     leaf:       feature 0xff, value = depth + c(points in the leaf),
//                 right = its own index, centre = reach = 0
//   A walk is L branch-free steps from the root; a leaf, a sink too, steps
//   onto itself (its comparisons are with NaN), and the path length is the
//   value of the node it ends on. check_iforest checks that every tree is
//   exactly its sinks and a preorder tree whose leaves are all within L
//   steps, with every index inside it.
// At the defaults (100 trees of 256 points, L = 8) a tree has about 200
// nodes: an image is about 300 KB.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/error.hpp"
#include "core/model.hpp"

namespace anomaly {

constexpr std::uint32_t kForestFeatures = 3;
constexpr std::uint8_t kForestLeaf = 0xff;
// Parameter limits (a fit outside them is refused 400 invalid_parameter).
// At the largest, 1000 trees of 1024 points, an image is at most 33 MB.
constexpr std::uint32_t kForestMaxTrees = 1000;
constexpr std::uint32_t kForestMinSample = 2, kForestMaxSample = 1024;
constexpr std::uint32_t kForestMaxDepth = 16;  // what check_iforest accepts; training makes at most 10
// contamination: 0 < c < 0.5.

struct ForestLayout {
    double threshold;
    double typical;
    double path_norm;
    double offset[kForestFeatures];
    double scale[kForestFeatures];
    std::uint32_t trees;
    std::uint32_t nodes;
    std::uint32_t depth;  // the height limit: every walk takes this many steps
    std::uint32_t sample; // as the fit asked (the trees hold min(sample, n) points)
    double contamination;
};
static_assert(sizeof(ForestLayout) == 96 && std::is_trivially_copyable<ForestLayout>::value,
              "part of the image format");

struct ForestNode {
    float value;           // the split, or at a leaf the path length
    float centre, reach;   // the range on feature: |x - centre| <= reach, 0 at a leaf
    std::uint16_t right;   // index of the right child in the tree
    std::uint8_t feature;  // 0..2, kForestLeaf at a leaf
    std::uint8_t depth;    // the node's depth in its tree (the root's is 0); a sink's index
};
static_assert(sizeof(ForestNode) == 16 && std::is_trivially_copyable<ForestNode>::value,
              "part of the image format");

// The average path length of an unsuccessful search in a binary search tree
// of n points: c(n) above.
double forest_path_norm(double n) noexcept;

// The 0-100 anomaly_score of a forest's score s: 0 up to the layout's
// typical score, 70 at its threshold, 100 at 1, linear in between.
double forest_anomaly_score(const ForestLayout &layout, double s) noexcept;

// Errors: 422 invalid_parameter (trees, sample or contamination outside the
// limits), 422 constant_series (every value the same), 422 invalid_value
// (values whose range is not a finite number).
Error train_iforest(const TrainingData &data, const DetectorParams &params, std::string *image);
// The forest's part of an image whose header check_image has checked: every
// size, offset, index, feature and number, so that judge_iforest stays inside
// the image and every walk ends.
bool check_iforest(std::string_view image) noexcept;
Judgement judge_iforest(const ModelHeader &image, double value, std::int64_t timestamp) noexcept;
// The parameters a forest was fitted with (for /series and /plot).
void forest_parameters(const ModelHeader &image, std::uint32_t *trees, std::uint32_t *sample,
                       double *contamination) noexcept;

}  // namespace anomaly
