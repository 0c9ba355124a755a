// The CSV bodies of /score: RFC 4180 with a header, timestamps as Unix
// seconds or ISO 8601, errors that name the line and the column.

#include <gtest/gtest.h>

#include <string>

#include "core/csv.hpp"

using namespace anomaly;

namespace {

struct Parsed {
    Error error;
    CsvTable table;
    TrainingData points;
};

Parsed parse(const std::string &body, std::size_t max_points = 1000, std::size_t min_points = 1) {
    Parsed p;
    FitLimits limits;
    limits.min_points = min_points;
    limits.max_points = max_points;
    p.error = parse_csv_body(body, limits, true, &p.table, &p.points);
    return p;
}

bool contains(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(CsvBody, UnixSecondsAndColumnsInAnyOrder) {
    Parsed p = parse("value,Timestamp\n1.5,1700000000\n-2,1700000060\n3e2,1700000120\n");
    ASSERT_FALSE(p.error) << p.error.detail;
    EXPECT_EQ(p.table.timestamp_column, 1u);
    EXPECT_EQ(p.table.value_column, 0u);
    EXPECT_EQ(p.points.timestamps, (std::vector<std::int64_t>{1700000000, 1700000060, 1700000120}));
    EXPECT_EQ(p.points.values, (std::vector<double>{1.5, -2, 300}));
    ASSERT_EQ(p.table.fields.size(), 6u);
    EXPECT_EQ(p.table.fields[2], "-2");
}

TEST(CsvBody, CrlfBomQuotesExtraColumnsAndNoFinalNewline) {
    const std::string body =
        "\xEF\xBB\xBFhost,\"timestamp\",VALUE,note\r\n"
        "a,1700000000,1,\"hello, world\"\r\n"
        "\"b \"\"quoted\"\"\",1700000060,2,\"two\r\nlines\"\r\n"
        "c,1700000120,3,";
    Parsed p = parse(body);
    ASSERT_FALSE(p.error) << p.error.detail;
    EXPECT_EQ(p.table.header, (std::vector<std::string>{"host", "timestamp", "VALUE", "note"}));
    ASSERT_EQ(p.points.values.size(), 3u);
    EXPECT_EQ(p.table.fields[3], "hello, world");
    EXPECT_EQ(p.table.fields[4], "b \"quoted\"");
    EXPECT_EQ(p.table.fields[7], "two\r\nlines");
    EXPECT_EQ(p.table.fields[11], "");
}

TEST(CsvBody, TrailingBlankLinesAreIgnored) {
    Parsed p = parse("timestamp,value\n1,1\n2,2\n\n\r\n\n");
    ASSERT_FALSE(p.error) << p.error.detail;
    EXPECT_EQ(p.points.values.size(), 2u);
}

TEST(CsvBody, FieldsAreKeptOnlyWhenAsked) {
    CsvTable table;
    TrainingData points;
    FitLimits limits;
    limits.min_points = 1;
    ASSERT_FALSE(parse_csv_body("timestamp,value,x\n1,1,a\n2,2,b\n", limits, false, &table, &points));
    EXPECT_TRUE(table.fields.empty());
    EXPECT_EQ(points.values.size(), 2u);
}

TEST(CsvTimestamp, UnixSecondsAndIso8601) {
    std::int64_t t = -1;
    EXPECT_TRUE(parse_csv_timestamp("0", &t));
    EXPECT_EQ(t, 0);
    EXPECT_TRUE(parse_csv_timestamp(" 1700000000 ", &t));
    EXPECT_EQ(t, 1700000000);
    EXPECT_TRUE(parse_csv_timestamp("253402300799", &t));
    EXPECT_FALSE(parse_csv_timestamp("253402300800", &t));
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01T00:00:00Z", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01 00:00:00", &t));  // no zone: UTC
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01t00:00:00z", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01T02:00:00+02:00", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2023-12-31T19:30:00-0430", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01T01:00:00+01", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01T00:00Z", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01T00:00:00.000Z", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-01-01", &t));
    EXPECT_EQ(t, 1704067200);
    EXPECT_TRUE(parse_csv_timestamp("2024-02-29T12:00:00Z", &t));
    EXPECT_EQ(t, 1709208000);
    EXPECT_TRUE(parse_csv_timestamp("1970-01-01T00:00:00Z", &t));
    EXPECT_EQ(t, 0);
    EXPECT_TRUE(parse_csv_timestamp("9999-12-31T23:59:59Z", &t));
    EXPECT_EQ(t, 253402300799);

    for (const char *bad : {"", "-1", "1.5", "1700000000.0", "2024-01-01T00:00:00.5Z", "2023-02-29T00:00:00Z",
                            "2024-13-01T00:00:00Z", "2024-01-32", "2024-01-01T24:00:00Z", "2024-01-01T00:60:00Z",
                            "2024-01-01T00:00:60Z", "2024-01-01T00:00:00+2:00", "2024-01-01T00:00:00+24:00",
                            "2024-01-01T00:00:00ZZ", "2024-01-01X00:00:00", "1969-12-31T23:59:59Z",
                            "1970-01-01T00:00:00+00:01", "24-01-01", "tomorrow", "0x10", "1e9",
                            "9999999999999999999999"}) {
        EXPECT_FALSE(parse_csv_timestamp(bad, &t)) << bad;
    }
}

TEST(CsvValue, FiniteDecimalNumbers) {
    double v = 0;
    EXPECT_TRUE(parse_csv_value("42", &v));
    EXPECT_EQ(v, 42);
    EXPECT_TRUE(parse_csv_value(" -1.25 ", &v));
    EXPECT_EQ(v, -1.25);
    EXPECT_TRUE(parse_csv_value("+4", &v));
    EXPECT_EQ(v, 4);
    EXPECT_TRUE(parse_csv_value("2e3", &v));
    EXPECT_EQ(v, 2000);
    EXPECT_TRUE(parse_csv_value(".5", &v));
    EXPECT_EQ(v, 0.5);
    for (const char *bad : {"", " ", "nan", "NaN", "inf", "-Infinity", "1e400", "abc", "1,5", "++1", "1 2", "0x1p3",
                            "true"}) {
        EXPECT_FALSE(parse_csv_value(bad, &v)) << bad;
    }
}

TEST(CsvBody, ErrorsNameTheLineAndTheColumn) {
    struct Case {
        const char *body;
        int status;
        const char *code;
        const char *where;
    };
    const Case cases[] = {
        {"", 400, "malformed_csv", "empty"},
        {"\xEF\xBB\xBF\r\n\n", 400, "malformed_csv", "empty"},
        {"time,value\n1,1\n", 400, "malformed_csv", "no timestamp column"},
        {"timestamp,val\n1,1\n", 400, "malformed_csv", "no value column"},
        {"timestamp,value,Timestamp\n1,1,1\n", 400, "malformed_csv", "columns 1 and 3"},
        {"timestamp,value\n1,1\n2,2,3\n", 400, "malformed_csv", "line 3, column 3"},
        {"timestamp,value\n1,1\n2\n", 400, "malformed_csv", "line 3, column 2"},
        {"timestamp,value\n1,1\n\n2,2\n", 400, "malformed_csv", "line 3, column 1"},
        {"timestamp,value\n1,\"1\n2,2\n", 400, "malformed_csv", "line 2, column 2 (value)"},
        {"timestamp,value\n1,\"1\"x\n", 400, "malformed_csv", "line 2, column 2 (value)"},
        {"timestamp,value\n1,1\n2,2\"\n", 400, "malformed_csv", "line 3, column 2 (value)"},
        {"timestamp,value\n1,1\r2,2\n", 400, "malformed_csv", "line 2, column 2 (value)"},
        {"timestamp,\"value\n1,1\n", 400, "malformed_csv", "line 1, column 2"},
        {"note,timestamp,value\n\"a\nb\",1,1\nc,x,2\n", 422, "invalid_timestamp", "line 4, column 2 (timestamp)"},
        {"timestamp,value\n1,1\n2,NaN\n", 422, "invalid_value", "line 3, column 2 (value)"},
        {"value,timestamp\n1,1\n\"\",2\n", 422, "invalid_value", "line 3, column 1 (value)"},
        {"timestamp,value\n5,1\n5,2\n", 422, "unordered_timestamps", "line 3, column 1 (timestamp)"},
        {"timestamp,value\n2024-01-01T00:00:01Z,1\n1704067200,2\n", 422, "unordered_timestamps", "line 3"},
        {"timestamp,value\n", 422, "too_few_points", "got 0"},
        {"timestamp,value\n1,1\n2,2\n3,3\n4,4\n", 422, "too_many_points", "line 5"},
    };
    for (const Case &c : cases) {
        Parsed p = parse(c.body, 3);
        EXPECT_EQ(p.error.status, c.status) << c.body;
        EXPECT_STREQ(p.error.code, c.code) << c.body;
        EXPECT_TRUE(contains(p.error.detail, c.where)) << c.body << " -> " << p.error.detail;
    }
}

TEST(CsvBody, MinPoints) {
    Parsed p = parse("timestamp,value\n1,1\n2,2\n", 1000, 3);
    EXPECT_STREQ(p.error.code, "too_few_points");
    EXPECT_FALSE(parse("timestamp,value\n1,1\n2,2\n3,3\n", 1000, 3).error);
}

TEST(CsvBody, BadBytesInDetailsArePrintable) {
    Parsed p = parse("timestamp,value\n1,\xff\x01\n");
    EXPECT_STREQ(p.error.code, "invalid_value");
    for (char c : p.error.detail) EXPECT_TRUE(c >= 0x20 && c < 0x7f);
}

TEST(CsvField, QuotedWhereNeeded) {
    std::string out;
    for (const char *f : {"plain", "a,b", "say \"hi\"", "two\nlines", " padded", "", "cr\r"}) {
        append_csv_field(&out, f);
        out += '|';
    }
    EXPECT_EQ(out, "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\" padded\"||\"cr\r\"|");
}

TEST(CsvField, WhatIsWrittenReadsBack) {
    const std::vector<std::string> fields = {"x, y", "\"", "a\r\nb", " s ", "1700000000", "2.5"};
    std::string body = "a,b,c,d,timestamp,value\r\n";
    for (std::size_t i = 0; i < fields.size(); i++) {
        if (i > 0) body += ',';
        append_csv_field(&body, fields[i]);
    }
    Parsed p = parse(body);
    ASSERT_FALSE(p.error) << p.error.detail;
    EXPECT_EQ(p.table.fields, fields);
}
