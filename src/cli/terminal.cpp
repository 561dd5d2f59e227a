#include "cli/terminal.h"

#include <editline/readline.h>
#include <fmt/core.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
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

// The line editor's character source: stdin, polled in short waits so that a Ctrl-C is seen
// even when it came before the read began (a signal cannot interrupt a read that has not
// started yet). After a Ctrl-C it reports end of input; LineReader::read then finds the flag.
int read_char_or_interrupt(FILE* /*in*/) {
  for (;;) {
    if (g_interrupted) return EOF;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    const int ready = poll(&p, 1, 50);
    if (ready < 0 && errno != EINTR) return EOF;
    if (ready <= 0) continue;
    unsigned char c = 0;
    const ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n == 1) return c;
    if (n == 0 || errno != EINTR) return EOF;
  }
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
    rl_getc_function = read_char_or_interrupt;
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
