// Small text helpers that headers, media types and CSV fields share.
#pragma once

#include <string_view>

namespace anomaly {

// s without the spaces and tabs around it (HTTP's optional whitespace, and
// what a CSV export pads fields with).
inline std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Whether a equals lower, ignoring the case of ASCII letters in a (lower is
// all lower case).
inline bool equals_lower(std::string_view a, std::string_view lower) {
    if (a.size() != lower.size()) return false;
    for (std::size_t i = 0; i < a.size(); i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != lower[i]) return false;
    }
    return true;
}

}  // namespace anomaly
