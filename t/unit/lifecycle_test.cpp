// What deletes and imports answer, and the checks of /export's query.
#include <gtest/gtest.h>

#include "core/lifecycle.hpp"

namespace anomaly {
namespace {

TEST(Lifecycle, RemovedSeriesAndVersion) {
    EXPECT_EQ(render_removed("sensor_1", 0, 3, true),
              R"({"series_id":"sensor_1","deleted_versions":3,"stream_deleted":true})");
    EXPECT_EQ(render_removed("sensor_1", 2, 1, false),
              R"({"series_id":"sensor_1","version":"v2","deleted_versions":1,"stream_deleted":false})");
}

TEST(Lifecycle, ImportedFiguresAndError) {
    ImportFigures f;
    f.versions_imported = 5;
    f.versions_present = 2;
    f.streams_imported = 1;
    f.streams_kept = 0;
    f.source_commits = 42;
    f.series = {"a", "b.c"};
    EXPECT_EQ(render_imported(f),
              R"({"versions_imported":5,"versions_present":2,"streams_imported":1,"streams_kept":0,)"
              R"("source_commits":42,"series":["a","b.c"]})");
    // An error keeps the figures: what came before it is imported.
    const std::string conflict = render_imported(f, "version_conflict", "v1 of \"a\" differs");
    EXPECT_EQ(conflict.rfind(R"({"detail":"v1 of \"a\" differs","code":"version_conflict","versions_imported":5)", 0),
              0u)
        << conflict;
}

TEST(Lifecycle, ExportMediaType) {
    EXPECT_TRUE(is_export_media_type("application/octet-stream"));
    EXPECT_TRUE(is_export_media_type("Application/Octet-Stream ; charset=binary"));
    EXPECT_TRUE(is_export_media_type("application/vnd.anomaly-export"));
    EXPECT_FALSE(is_export_media_type("application/json"));
    EXPECT_FALSE(is_export_media_type("text/plain"));
    EXPECT_FALSE(is_export_media_type(""));
}

TEST(Lifecycle, CommitCount) {
    std::uint64_t n = 7;
    EXPECT_TRUE(parse_commit_count("0", &n));
    EXPECT_EQ(n, 0u);
    EXPECT_TRUE(parse_commit_count("18446744073709551", &n));
    EXPECT_EQ(n, 18446744073709551u);
    for (const char *bad : {"", "-1", "1.5", "v3", "12a", "99999999999999999999"}) EXPECT_FALSE(parse_commit_count(bad, &n)) << bad;
}

TEST(Lifecycle, SeriesPrefix) {
    EXPECT_TRUE(valid_series_prefix(""));
    EXPECT_TRUE(valid_series_prefix("pre_a:b.c-"));
    EXPECT_FALSE(valid_series_prefix("a/b"));
    EXPECT_FALSE(valid_series_prefix("a b"));
    EXPECT_FALSE(valid_series_prefix(std::string(129, 'a')));
    EXPECT_TRUE(valid_series_prefix(std::string(128, 'a')));
}

}  // namespace
}  // namespace anomaly
