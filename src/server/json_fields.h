// Typed access to the fields of a JSON request object. A field that is absent or null takes its
// default; one of the wrong type or out of range is an error naming it (`param`) and saying what
// would be accepted.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "server/api_error.h"

namespace invar::server {

class Fields {
 public:
  using json = nlohmann::json;
  // `prefix` names the object in errors ("stream_options." for its fields).
  explicit Fields(const json& body, std::string prefix = {})
      : body_(body), prefix_(std::move(prefix)) {}

  const json* get(const char* name) const {
    auto it = body_.find(name);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<ApiError> boolean(const char* name, bool* out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) return type_error(prefix_ + name, "a boolean");
    *out = v->get<bool>();
    return std::nullopt;
  }

  std::optional<ApiError> string(const char* name, std::string* out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) return type_error(prefix_ + name, "a string");
    *out = v->get<std::string>();
    return std::nullopt;
  }

  // Integers, also written as 16.0; `*given` tells whether the field was there.
  std::optional<ApiError> integer(const char* name, int64_t lo, int64_t hi, int64_t* out,
                                  bool* given = nullptr) const {
    const json* v = get(name);
    if (given) *given = v != nullptr;
    if (!v) return std::nullopt;
    const std::string param = prefix_ + name;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
        return range_error(param, lo, hi, v->dump());
      *out = v->get<int64_t>();
    } else if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      *out = int64_t(v->get<double>());
    } else {
      return type_error(param, "an integer");
    }
    if (*out < lo || *out > hi) return range_error(param, lo, hi, v->dump());
    return std::nullopt;
  }

  // A number in [lo, hi] (open at lo when lo_open).
  std::optional<ApiError> number(const char* name, double lo, double hi, bool lo_open,
                                 float* out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    const std::string param = prefix_ + name;
    if (!v->is_number()) return type_error(param, "a number");
    double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
      return ApiError::bad_request(
          param, fmt::format("'{}' is {}; it must be {} {} and <= {}", param, v->dump(),
                             lo_open ? ">" : ">=", lo, hi));
    }
    *out = float(x);
    return std::nullopt;
  }

  static ApiError type_error(const std::string& name, const char* expected) {
    return ApiError::bad_request(name, fmt::format("'{}' must be {}", name, expected));
  }
  static ApiError range_error(const std::string& name, int64_t lo, int64_t hi,
                              const std::string& got) {
    return ApiError::bad_request(
        name, fmt::format("'{}' is {}; it must be between {} and {}", name, got, lo, hi));
  }

 private:
  const json& body_;
  std::string prefix_;
};

}  // namespace invar::server
