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
bool g_watching = false;  // an InterruptWatch is alive

extern "C" void on_sigint(int) {
  g_interrupted = 1;
}

// Our SIGINT handler. `restart`: interrupted system calls resume (SA_RESTART), so a Ctrl-C
// while an answer streams cannot fail a write to the terminal with EINTR; without it a blocked
// read returns, which is what the prompt needs to start over.
void install_handler(bool restart, struct sigaction* previous) {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = restart ? SA_RESTART : 0;
  sigaction(SIGINT, &sa, previous);
}

// While the prompt waits for a line: Ctrl-C interrupts the read (InterruptWatch only).
class PromptInterrupts {
 public:
  PromptInterrupts() {
    if (g_watching) install_handler(false, nullptr);
  }
  ~PromptInterrupts() {
    if (g_watching) install_handler(true, nullptr);
  }
};

}  // namespace

InterruptWatch::InterruptWatch() {
  g_interrupted = 0;
  install_handler(true, &g_previous);
  g_watching = true;
}

InterruptWatch::~InterruptWatch() {
  g_watching = false;
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
  char* raw = nullptr;
  {
    const PromptInterrupts interrupts;
    raw = readline(prompt.c_str());
  }
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
