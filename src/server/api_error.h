// OpenAI-style API errors: an HTTP status and the body {"error":{"message","type","param","code"}}
// that the openai client turns into BadRequestError, NotFoundError, RateLimitError ...
#pragma once

#include <string>

namespace invar::server {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault; empty: null
  std::string code;   // machine-readable reason; empty: null

  static ApiError bad_request(std::string param, std::string message) {
    return {400, std::move(message), "invalid_request_error", std::move(param), ""};
  }
};

// The JSON body of an error response.
std::string error_body(const ApiError& e);

}  // namespace invar::server
