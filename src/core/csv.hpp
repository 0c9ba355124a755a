// CSV bodies of /score (CONTRACT section 7): RFC 4180 with a header row.
// A small strict parser of our own: every error names the line and the
// column it was found at, which is what a person fixing an export needs.
//
//   - the first record is the header; it names a timestamp and a value
//     column (case-insensitive, any position, each once); other columns
//     are allowed and carried through
//   - fields separated by commas; a field in double quotes may hold commas,
//     line breaks and quotes written twice ("")
//   - lines end with LF or CRLF; the last one may have no line end; blank
//     lines at the end are ignored, blank lines before a row are refused
//   - a UTF-8 byte order mark before the header is skipped
//   - every row has as many fields as the header
//   - timestamps: Unix seconds (digits), or ISO 8601 (see parse_csv_timestamp)
//   - values: decimal numbers, finite
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "detector.hpp"
#include "error.hpp"
#include "request.hpp"

namespace anomaly {

struct CsvTable {
    std::vector<std::string> header;  // the names as written, unquoted
    std::size_t timestamp_column = 0; // 0-based
    std::size_t value_column = 0;
    // Every row's fields, unquoted, row after row (header.size() a row);
    // filled only when asked (keep_fields), for an answer in CSV.
    std::vector<std::string> fields;
};

// Parses body into table and points. Checks, first failure in the body wins:
//   400 malformed_csv         empty body, no header, a header without a
//                             timestamp or value column (or with one twice),
//                             bad quoting, a stray carriage return, a blank
//                             line before a row, a row whose field count
//                             differs from the header's
//   422 too_many_points       more than limits.max_points rows
//   422 invalid_timestamp     neither Unix seconds nor ISO 8601, or outside 0..9999-12-31T23:59:59Z
//   422 invalid_value         not a finite number
//   422 unordered_timestamps  not after the previous row's
//   422 too_few_points        fewer than limits.min_points rows
// Each detail names the line (1-based, the header is line 1) and the
// column (1-based, with its name). Equal values are not refused (what trains
// on them checks that itself).
Error parse_csv_body(std::string_view body, const FitLimits &limits, bool keep_fields, CsvTable *table,
                     TrainingData *points);

// A timestamp field: Unix seconds (digits only, 0..kMaxTimestamp), or
// ISO 8601: 2024-01-01T00:00:00Z, a space instead of T, a zone Z, +02:00,
// +0200 or +02 (none: UTC), seconds optional, a fraction of a second only
// when it is zero (2024-01-01T00:00:00.000Z: timestamps are whole seconds),
// or a date alone (midnight UTC). Surrounding spaces are ignored.
bool parse_csv_timestamp(std::string_view field, std::int64_t *out) noexcept;

// A value field: a decimal number as JSON or a spreadsheet writes it
// (-1.5, 2e3, +4, .5), finite. Surrounding spaces are ignored.
bool parse_csv_value(std::string_view field, double *out) noexcept;

// Appends field as a CSV field: in double quotes (inner quotes doubled)
// when it holds a comma, a quote, a line break or surrounding spaces.
void append_csv_field(std::string *out, std::string_view field);

}  // namespace anomaly
