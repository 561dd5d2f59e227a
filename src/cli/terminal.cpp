#include "cli/terminal.h"

#include <editline/readline.h>
#include <fmt/core.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace invar::cli {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
struct sigaction g_previous {};

extern "C" void on_sigint(int) {
  g_interrupted = 1;
}

}  // namespace

InterruptWatch::InterruptWatch() {
  g_interrupted = 0;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns, so the prompt can start over
  sigaction(SIGINT, &sa, &g_previous);
}

InterruptWatch::~InterruptWatch() {
  sigaction(SIGINT, &g_previous, nullptr);
}

bool InterruptWatch::take() {
  const bool was = g_interrupted != 0;
  g_interrupted = 0;
  return was;
}

LineReader::LineReader() : interactive_(isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1) {
  if (interactive_) {
    // Our handler, not libedit's: libedit's would re-raise SIGINT into the default action.
    rl_catch_signals = 0;
    using_history();
  }
}

LineReader::~LineReader() {
  if (interactive_) clear_history();
}

std::optional<std::string> LineReader::read(const std::string& prompt) {
  if (!interactive_) {
    fmt::print("{}", prompt);
    std::fflush(stdout);
    std::string line;
    if (!std::getline(std::cin, line)) return std::nullopt;
    return line;
  }
  InterruptWatch::take();
  char* raw = readline(prompt.c_str());
  if (!raw) {
    if (InterruptWatch::take()) {  // Ctrl-C: drop the line, new prompt
      fmt::print("\n");
      return std::string();
    }
    fmt::print("\n");  // Ctrl-D: end the prompt's line
    return std::nullopt;
  }
  std::string line(raw);
  std::free(raw);
  if (InterruptWatch::take()) return std::string();
  if (!line.empty()) add_history(line.c_str());
  return line;
}

}  // namespace invar::cli
