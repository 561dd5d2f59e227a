// Terminal input for `invar chat`: line editing and history (libedit) when stdin is a terminal,
// plain lines otherwise; and Ctrl-C as "stop the answer", not "kill the program".
#pragma once

#include <optional>
#include <string>

namespace invar::cli {

// While one exists, SIGINT sets a flag instead of ending the process. Not nestable.
class InterruptWatch {
 public:
  InterruptWatch();
  ~InterruptWatch();  // restores the previous handler
  InterruptWatch(const InterruptWatch&) = delete;
  InterruptWatch& operator=(const InterruptWatch&) = delete;

  // Whether Ctrl-C came since the last call (and clears it).
  static bool take();
};

class LineReader {
 public:
  LineReader();
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line without its newline; nullopt at end of input (Ctrl-D). With an
  // InterruptWatch alive, Ctrl-C at the prompt gives an empty line (the prompt starts over).
  std::optional<std::string> read(const std::string& prompt);

  bool interactive() const { return interactive_; }

 private:
  bool interactive_;
};

}  // namespace invar::cli
