// Errors as values at module boundaries (STYLE.md): a Status carries a message a user can act
// on (what was wrong, where, what to do); Result<T> is a value or a Status.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace invar {

// What kind of failure a Status is, for callers that map errors (e.g. to HTTP status codes).
enum class StatusCode : uint8_t {
  ok,
  invalid_argument,    // the caller's input is wrong
  resource_exhausted,  // a queue or cache is full; retry later
  not_found,
  cancelled,
  internal,
};

class Status {
 public:
  Status() = default;  // ok
  static Status error(std::string message) { return Status(StatusCode::internal, std::move(message)); }
  static Status error(StatusCode code, std::string message) { return Status(code, std::move(message)); }
  template <typename... Args>
  static Status errorf(fmt::format_string<Args...> f, Args&&... args) {
    return Status(StatusCode::internal, fmt::format(f, std::forward<Args>(args)...));
  }

  bool ok() const { return !message_.has_value(); }
  explicit operator bool() const { return ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const {
    static const std::string kOk = "ok";
    return message_ ? *message_ : kOk;
  }

 private:
  Status(StatusCode code, std::string m) : code_(code), message_(std::move(m)) {}
  StatusCode code_ = StatusCode::ok;
  std::optional<std::string> message_;
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}                    // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace invar

// Return a failing Status from the current function.
#define INVAR_RETURN_IF_ERROR(expr)           \
  do {                                        \
    ::invar::Status invar_status_ = (expr);   \
    if (!invar_status_.ok()) return invar_status_; \
  } while (0)

#define INVAR_CONCAT_INNER_(a, b) a##b
#define INVAR_CONCAT_(a, b) INVAR_CONCAT_INNER_(a, b)
// `INVAR_ASSIGN_OR_RETURN(auto x, f());` binds x to f()'s value or returns its Status.
#define INVAR_ASSIGN_OR_RETURN(decl, expr) \
  INVAR_ASSIGN_OR_RETURN_IMPL_(INVAR_CONCAT_(invar_result_, __LINE__), decl, expr)
#define INVAR_ASSIGN_OR_RETURN_IMPL_(tmp, decl, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  decl = std::move(tmp).value()
