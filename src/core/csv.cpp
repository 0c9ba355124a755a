#include "core/csv.hpp"

#include <charconv>
#include <cmath>

#include "core/render.hpp"
#include "core/text.hpp"

namespace anomaly {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// A field as a detail quotes it: short, printable ASCII only (the detail is
// JSON, and a stray byte of a broken UTF-8 sequence must not break it).
std::string shown(std::string_view field) {
    std::string s;
    const std::size_t n = field.size() < 40 ? field.size() : 40;
    for (std::size_t i = 0; i < n; i++) {
        const auto c = static_cast<unsigned char>(field[i]);
        s.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
    }
    if (field.size() > n) s += "...";
    return s;
}

// Reads records one at a time, counting lines.
class Reader {
public:
    explicit Reader(std::string_view body) : p_(body.data()), end_(body.data() + body.size()) {}

    bool at_end() const { return p_ == end_; }
    std::size_t line() const { return line_; }

    // True when only line ends (and spaces) remain: trailing blank lines.
    bool only_blank_left() const {
        for (const char *q = p_; q < end_; q++)
            if (*q != '\r' && *q != '\n' && *q != ' ' && *q != '\t') return false;
        return true;
    }

    bool at_blank_line() const { return *p_ == '\n' || (*p_ == '\r' && p_ + 1 < end_ && p_[1] == '\n'); }

    // Reads one record (the reader is not at its end) into fields, cleared
    // first. *start_line: the line it starts on.
    Error read(std::vector<std::string> *fields, const std::vector<std::string> *names) {
        fields->clear();
        for (;;) {
            const std::size_t column = fields->size() + 1;
            const std::size_t field_line = line_;
            fields->emplace_back();
            std::string &field = fields->back();
            if (p_ < end_ && *p_ == '"') {
                p_++;
                for (;;) {
                    if (p_ == end_)
                        return bad(field_line, column, names, "a quoted field is not closed (a \" is missing)");
                    const char c = *p_;
                    if (c == '"') {
                        if (p_ + 1 < end_ && p_[1] == '"') {
                            field.push_back('"');
                            p_ += 2;
                            continue;
                        }
                        p_++;
                        break;
                    }
                    if (c == '\n') line_++;
                    // Copy up to the next quote at once.
                    const char *q = p_ + 1;
                    while (q < end_ && *q != '"' && *q != '\n') q++;
                    field.append(p_, q);
                    p_ = q;
                }
                if (p_ == end_) return Error();
                if (*p_ == ',') {
                    p_++;
                    continue;
                }
                if (end_of_line()) return Error();
                return bad(line_, column, names,
                           "a quoted field must be followed by a comma or the end of the line; write a quote "
                           "inside quotes as \"\"");
            }
            const char *q = p_;
            while (q < end_ && *q != ',' && *q != '\n' && *q != '\r' && *q != '"') q++;
            field.assign(p_, q);
            p_ = q;
            if (p_ == end_) return Error();
            if (*p_ == ',') {
                p_++;
                continue;
            }
            if (*p_ == '"')
                return bad(line_, column, names,
                           "a quote inside a field that does not start with one; put the whole field in quotes "
                           "and write the quote as \"\"");
            if (end_of_line()) return Error();
            return bad(line_, column, names, "a carriage return that does not end the line (CRLF)");
        }
    }

private:
    // Steps over LF or CRLF; false for anything else.
    bool end_of_line() {
        if (*p_ == '\n') {
            p_++;
        } else if (*p_ == '\r' && p_ + 1 < end_ && p_[1] == '\n') {
            p_ += 2;
        } else {
            return false;
        }
        line_++;
        return true;
    }

    Error bad(std::size_t line, std::size_t column, const std::vector<std::string> *names, const std::string &what) {
        std::string where = "line " + std::to_string(line) + ", column " + std::to_string(column);
        if (names != nullptr && column <= names->size()) where += " (" + shown((*names)[column - 1]) + ")";
        return make_error(400, "malformed_csv", "The CSV body is malformed at " + where + ": " + what + ".");
    }

    const char *p_;
    const char *end_;
    std::size_t line_ = 1;
};

std::string where(std::size_t line, std::size_t column, const std::string &name) {
    return "line " + std::to_string(line) + ", column " + std::to_string(column + 1) + " (" + shown(name) + ")";
}

}  // namespace

bool parse_csv_timestamp(std::string_view field, std::int64_t *out) noexcept {
    const std::string_view s = trim_blanks(field);
    if (s.empty()) return false;
    bool all_digits = s.size() <= 12;
    for (char c : s) all_digits = all_digits && c >= '0' && c <= '9';
    if (all_digits) {
        std::int64_t t = 0;
        for (char c : s) t = t * 10 + (c - '0');
        if (t > kMaxTimestamp) return false;
        *out = t;
        return true;
    }
    std::int64_t ms = 0;
    bool whole_second = false;
    // A fraction only when it is zero: timestamps are whole seconds.
    if (!parse_iso8601(s, &ms, &whole_second) || !whole_second) return false;
    *out = ms / 1000;
    return true;
}

bool parse_csv_value(std::string_view field, double *out) noexcept {
    std::string_view s = trim_blanks(field);
    if (!s.empty() && s.front() == '+') s.remove_prefix(1);
    if (s.empty() || s.front() == '+' || s.front() == ' ') return false;
    // from_chars reads nan and inf too; those are refused by the check below.
    double v = 0;
    const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
    if (res.ec != std::errc() || res.ptr != s.data() + s.size() || !std::isfinite(v)) return false;
    *out = v;
    return true;
}

void append_csv_field(std::string *out, std::string_view field) {
    bool quote = !field.empty() && (field.front() == ' ' || field.back() == ' ');
    for (char c : field) quote = quote || c == ',' || c == '"' || c == '\n' || c == '\r';
    if (!quote) {
        out->append(field);
        return;
    }
    out->push_back('"');
    for (char c : field) {
        if (c == '"') out->push_back('"');
        out->push_back(c);
    }
    out->push_back('"');
}

Error parse_csv_body(std::string_view body, const FitLimits &limits, bool keep_fields, CsvTable *table,
                     TrainingData *points) {
    table->header.clear();
    table->fields.clear();
    points->timestamps.clear();
    points->values.clear();
    if (body.substr(0, kBom.size()) == kBom) body.remove_prefix(kBom.size());
    Reader reader(body);
    if (reader.at_end() || reader.only_blank_left())
        return make_error(400, "malformed_csv",
                          "The CSV body is empty; its first line must be a header naming the timestamp and value "
                          "columns, such as timestamp,value.");
    if (Error e = reader.read(&table->header, nullptr)) return e;
    const std::size_t columns = table->header.size();
    std::size_t ts = SIZE_MAX, val = SIZE_MAX;
    for (std::size_t i = 0; i < columns; i++) {
        const std::string_view name = trim_blanks(table->header[i]);
        std::size_t *slot = equals_lower(name, "timestamp") ? &ts : equals_lower(name, "value") ? &val : nullptr;
        if (slot == nullptr) continue;
        if (*slot != SIZE_MAX)
            return make_error(400, "malformed_csv",
                              "The CSV header names " + shown(name) + " twice (columns " + std::to_string(*slot + 1) +
                                  " and " + std::to_string(i + 1) + "); which one holds the data cannot be told.");
        *slot = i;
    }
    if (ts == SIZE_MAX || val == SIZE_MAX)
        return make_error(400, "malformed_csv",
                          std::string("The CSV header (line 1) has no ") + (ts == SIZE_MAX ? "timestamp" : "value") +
                              " column; it must name a timestamp and a value column, such as timestamp,value.");
    table->timestamp_column = ts;
    table->value_column = val;

    std::vector<std::string> row;
    row.reserve(columns);
    while (!reader.at_end()) {
        if (reader.at_blank_line()) {
            if (reader.only_blank_left()) break;
            return make_error(400, "malformed_csv",
                              "The CSV body is malformed at line " + std::to_string(reader.line()) +
                                  ", column 1: the line is blank, and rows follow it.");
        }
        const std::size_t line = reader.line();
        if (Error e = reader.read(&row, &table->header)) return e;
        if (row.size() != columns) {
            const std::size_t column = row.size() < columns ? row.size() + 1 : columns + 1;
            return make_error(400, "malformed_csv",
                              "The CSV body is malformed at line " + std::to_string(line) + ", column " +
                                  std::to_string(column) + ": the row has " + std::to_string(row.size()) +
                                  (row.size() == 1 ? " field" : " fields") + " but the header has " +
                                  std::to_string(columns) + ".");
        }
        if (points->values.size() >= limits.max_points)
            return make_error(422, "too_many_points",
                              "At most " + std::to_string(limits.max_points) +
                                  " points are accepted, and line " + std::to_string(line) +
                                  " holds one more (anomaly_max_points).");
        std::int64_t t = 0;
        if (!parse_csv_timestamp(row[ts], &t))
            return make_error(422, "invalid_timestamp",
                              "At " + where(line, ts, table->header[ts]) + ", \"" + shown(row[ts]) +
                                  "\" is not a timestamp: write Unix seconds (0 to 253402300799) or ISO 8601 "
                                  "such as 2024-01-01T00:00:00Z.");
        double v = 0;
        if (!parse_csv_value(row[val], &v))
            return make_error(422, "invalid_value",
                              "At " + where(line, val, table->header[val]) + ", \"" + shown(row[val]) +
                                  "\" is not a finite number.");
        if (!points->timestamps.empty() && t <= points->timestamps.back())
            return make_error(422, "unordered_timestamps",
                              "At " + where(line, ts, table->header[ts]) + ", " + std::to_string(t) +
                                  " is not after the previous row's " + std::to_string(points->timestamps.back()) +
                                  "; timestamps must be strictly increasing.");
        points->timestamps.push_back(t);
        points->values.push_back(v);
        if (keep_fields)
            for (std::string &f : row) table->fields.push_back(std::move(f));
    }
    if (points->values.size() < limits.min_points)
        return make_error(422, "too_few_points",
                          "At least " + std::to_string(limits.min_points) + " points are needed, got " +
                              std::to_string(points->values.size()) + " (anomaly_min_points).");
    return Error();
}

}  // namespace anomaly
