// Deletes, export and import (CONTRACT section 9): what their answers say.
// No nginx in here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace anomaly {

// DELETE /series/{id}: {"series_id":"s","deleted_versions":3,"stream_deleted":true}
// DELETE /series/{id}?version=v2: {"series_id":"s","version":"v2","deleted_versions":1,"stream_deleted":false}
std::string render_removed(std::string_view series_id, std::uint32_t version, std::uint32_t versions,
                           bool stream);

// What an import did, so far as it went.
struct ImportFigures {
    std::uint64_t versions_imported = 0;
    std::uint64_t versions_present = 0;  // the node had them already, byte for byte
    std::uint64_t streams_imported = 0;
    std::uint64_t streams_kept = 0;      // the node had a stream for that series: kept, not replaced
    std::uint64_t source_commits = 0;    // the export's commit count (its header)
    std::vector<std::string> series;    // every series with a record in the body, in order of appearance
};
// 200: {"versions_imported":..,"versions_present":..,"streams_imported":..,
// "streams_kept":..,"source_commits":..,"series":[..]}; an error adds
// "detail" and "code" in front (the figures say what came before it).
std::string render_imported(const ImportFigures &figures, std::string_view code = {},
                            std::string_view detail = {});

// The Content-Type of POST /import: application/octet-stream or
// application/vnd.anomaly-export, parameters and case aside.
bool is_export_media_type(std::string_view content_type) noexcept;

// ?since= of /export: a commit count, digits only; false otherwise.
bool parse_commit_count(std::string_view text, std::uint64_t *count);
// ?series_id= of /export: a prefix of series ids (empty: every series);
// false when it has a character no series id has, or is too long.
bool valid_series_prefix(std::string_view prefix);

}  // namespace anomaly
