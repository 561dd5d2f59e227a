// Target prompts of the black-box scenarios: they ask for long answers (step-by-step
// arithmetic, code, explanations), because a batch-dependent kernel often changes one logit by
// an ulp and the tokens only part ways hundreds of tokens in.
#include <fstream>

#include "verify/blackbox.h"

namespace invar::verify {

const std::vector<std::string>& builtin_prompts() {
  static const std::vector<std::string> kPrompts{
      "Solve step by step, showing every intermediate result: a train leaves at 9:40 and travels "
      "at 72 km/h for 2 hours and 35 minutes, stops for 18 minutes, then travels 143 km more at "
      "88 km/h. At what time does it arrive, and how far has it gone in total?\n\nSolution:\n",
      "Write a Python function that parses a CSV file of transactions (date, account, amount), "
      "groups them by month and account, and prints a table of totals. Explain each part of the "
      "code after writing it.\n\n```python\n",
      "Explain, step by step, how to multiply 4738 by 2659 using long multiplication. Write out "
      "every partial product and every carry.\n\nStep 1:",
      "Prove that the square root of 2 is irrational. Then explain each step of the proof in "
      "plain words for a student who has never seen a proof by contradiction.\n\nProof:",
      "Write a C function that reverses a singly linked list in place, a second one that detects "
      "a cycle, and a main() that tests both. Comment every line.\n\n```c\n",
      "A shop sells pencils at 3 for 1.20 and notebooks at 2.75 each. Maria buys 17 pencils and "
      "6 notebooks and pays with a 50 note. Work out her change step by step, then check the "
      "answer a second way.\n\nAnswer:",
      "Describe, in order, everything that happens inside a computer from the moment a key is "
      "pressed until the character appears on the screen. Be detailed.\n\n1.",
      "Write a JavaScript class for a priority queue backed by a binary heap, with push, pop, "
      "peek and size, and explain the time complexity of each method.\n\n```javascript\n",
  };
  return kPrompts;
}

Result<std::vector<std::string>> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return Status::error(StatusCode::invalid_argument,
                         "--prompts " + path + ": cannot open the file");
  std::vector<std::string> prompts;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string p;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == 'n') {
        p += '\n';
        ++i;
      } else {
        p += line[i];
      }
    }
    if (p.find_first_not_of(" \t") != std::string::npos) prompts.push_back(std::move(p));
  }
  if (prompts.empty())
    return Status::error(StatusCode::invalid_argument,
                         "--prompts " + path + ": no prompts (one per line expected)");
  return prompts;
}

}  // namespace invar::verify
