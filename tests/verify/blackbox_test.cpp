// `invar verify --url` against a real `invar serve` with SmolLM2 (small N): every scenario
// passes; the same check against a server whose engine runs the fast (batch-dependent) kernels
// fails (the negative control); response parsing and divergence reports on canned responses.
#include "verify/blackbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <regex>
#include <thread>

#include "engine/engine.h"
#include "server/server.h"
#include "test_paths.h"
#include "verify/completion.h"

namespace invar::verify {
namespace {

std::string test_threads() {
  const char* env = std::getenv("INVAR_TEST_THREADS");
  return env ? env : "2";
}

// `invar serve` on a free loopback port, killed at the end.
class ServeProcess {
 public:
  explicit ServeProcess(const std::vector<std::string>& args) {
    int pipefd[2];
    if (pipe(pipefd) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(pipefd[1], STDERR_FILENO);
      close(pipefd[0]);
      close(pipefd[1]);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(pipefd[1]);
    stderr_ = pipefd[0];
    // Wait for "listening on http://127.0.0.1:PORT".
    static const std::regex kListening(R"(listening on (http://127\.0\.0\.1:\d+))");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (url_.empty() && std::chrono::steady_clock::now() < deadline) {
      pollfd p{stderr_, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      char buf[512];
      ssize_t n = read(stderr_, buf, sizeof buf);
      if (n <= 0) break;
      log_.append(buf, size_t(n));
      std::smatch m;
      if (std::regex_search(log_, m, kListening)) url_ = m[1].str();
    }
    // Keep draining its stderr so the server never blocks on a full pipe.
    drain_ = std::thread([this] {
      char buf[512];
      for (ssize_t n; (n = read(stderr_, buf, sizeof buf)) > 0;) {
        std::lock_guard<std::mutex> lock(mu_);
        log_.append(buf, size_t(n));
      }
    });
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (drain_.joinable()) drain_.join();
    if (stderr_ >= 0) close(stderr_);
  }
  const std::string& url() const { return url_; }
  std::string log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

 private:
  pid_t pid_ = -1;
  int stderr_ = -1;
  std::string url_, log_;
  std::mutex mu_;
  std::thread drain_;
};

BlackBoxOptions tiny(const std::string& url) {
  BlackBoxOptions o;
  o.url = url;
  o.max_tokens = 16;
  o.burst = 6;
  o.needle_rounds = 2;
  o.needle_others = 4;
  o.loaded_concurrency = {3};
  o.loaded_repeats = 1;
  o.prefix_rounds = 1;
  o.prefix_others = 3;
  o.prefix_words = 60;
  o.seeded_requests = 3;
  o.other_max_words = 40;
  o.timeout_s = 300;
  return o;
}

TEST(BlackBox, InvarServePassesEveryScenario) {
  const std::string model = invar::testing::default_model_path();
  if (model.empty()) GTEST_SKIP() << "default model not fetched (run scripts/fetch-model)";
  ServeProcess serve({INVAR_BINARY, "serve", "--model", model, "--port", "0", "--threads",
                      test_threads(), "--max-context", "1024", "--api-key", "sekrit"});
  ASSERT_FALSE(serve.url().empty()) << "invar serve did not start:\n" << serve.log();

  BlackBoxOptions o = tiny(serve.url());
  o.api_key = "sekrit";
  BlackBoxReport r = run_blackbox(o);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.model, "SmolLM2-135M-Instruct.Q4_1");
  EXPECT_EQ(r.verdict(), Verdict::pass) << format_report(r);
  ASSERT_EQ(r.scenarios.size(), blackbox_scenario_names().size());
  for (const auto& s : r.scenarios) {
    EXPECT_EQ(s.errors, 0) << s.name << ": " << s.first_error;
    EXPECT_EQ(s.max_unique, 1) << s.name;
    EXPECT_GT(s.requests, 1) << s.name;
    EXPECT_EQ(s.fingerprints.size(), 1u) << s.name;
  }

  // The command line: exit status 0 and a JSON report; a wrong key is an error (exit 2).
  const std::string json_path = ::testing::TempDir() + "verify_blackbox.json";
  const std::string cmd = std::string(INVAR_BINARY) + " verify --url " + serve.url() +
                          " --api-key sekrit --scenarios burst --burst 3 --max-tokens 8 --json " +
                          json_path + " > /dev/null";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 0);
  std::ifstream in(json_path);
  std::string json((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"verdict\": \"PASS\""), std::string::npos) << json;
  const std::string bad = std::string(INVAR_BINARY) + " verify --url " + serve.url() +
                          " --api-key wrong --scenarios burst --burst 2 > /dev/null";
  EXPECT_EQ(WEXITSTATUS(std::system(bad.c_str())), 2);
}

// R8 for the black-box mode: a server whose kernels are batch-dependent must fail the burst.
TEST(BlackBox, FastKernelServerFailsTheBurst) {
  const std::string path = invar::testing::default_model_path();
  if (path.empty()) GTEST_SKIP() << "default model not fetched (run scripts/fetch-model)";
  auto bundle = engine::open_model(path, {});
  ASSERT_TRUE(bundle.ok()) << bundle.status().message();
  engine::EngineOptions eo;
  eo.threads = std::atoi(test_threads().c_str());
  eo.max_context = 512;
  eo.kernels = kernels::KernelMode::fast;
  engine::Engine engine(*bundle, eo);
  server::ServerOptions so;
  so.http.host = "127.0.0.1";
  so.http.port = 0;
  so.served_model_name = "smollm2-fast";
  std::promise<uint16_t> port;
  so.on_listening = [&](uint16_t p) { port.set_value(p); };
  server::Server server(engine, so);
  std::thread serving([&] { (void)server.run(); });

  BlackBoxOptions o = tiny("http://127.0.0.1:" + std::to_string(port.get_future().get()));
  o.scenarios = {"burst"};
  o.burst = 10;  // decode steps of 10 rows leave split-K; the solo run's single row does not
  o.max_tokens = 6;
  BlackBoxReport r = run_blackbox(o);
  server.request_shutdown();
  serving.join();
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.verdict(), Verdict::fail) << format_report(r);
  ASSERT_EQ(r.scenarios.size(), 1u);
  EXPECT_GT(r.scenarios[0].diverging + r.scenarios[0].logprob_mismatches, 0);
}

HttpResponse ok(const std::string& body) {
  return {200, body, {}};
}

TEST(BlackBoxCompare, ParsesCompletionsAndChatWithLogprobs) {
  Completion c = parse_completion(
      ok(R"({"system_fingerprint":"fp","choices":[{"text":"ab","finish_reason":"length",
            "logprobs":{"tokens":["a","b"],"token_logprobs":[-0.5,-1.25],
                        "top_logprobs":[{"a":-0.5,"c":-2.0},{"b":-1.25}]}}]})"),
      false);
  ASSERT_TRUE(c.ok) << c.error;
  EXPECT_EQ(c.text, "ab");
  EXPECT_EQ(c.fingerprint, "fp");
  ASSERT_TRUE(c.has_logprobs);
  ASSERT_EQ(c.tokens.size(), 2u);
  EXPECT_EQ(c.tokens[1].logprob, -1.25);
  EXPECT_EQ(c.tokens[0].top.size(), 2u);

  Completion chat = parse_completion(
      ok(R"({"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop",
            "logprobs":{"content":[{"token":"hi","logprob":-0.1,
                                    "top_logprobs":[{"token":"hi","logprob":-0.1}]}]}}]})"),
      true);
  ASSERT_TRUE(chat.ok);
  EXPECT_EQ(chat.text, "hi");
  ASSERT_EQ(chat.tokens.size(), 1u);
  EXPECT_EQ(chat.tokens[0].top[0].first, "hi");

  Completion err = parse_completion({429, R"({"error":{"message":"queue full"}})", {}}, false);
  EXPECT_FALSE(err.ok);
  EXPECT_NE(err.error.find("queue full"), std::string::npos);
  EXPECT_FALSE(parse_completion({0, {}, "connect: refused"}, false).ok);
}

Completion make(std::vector<std::pair<std::string, double>> tokens) {
  Completion c;
  c.ok = true;
  c.has_logprobs = true;
  c.finish_reason = "length";
  for (auto& [t, lp] : tokens) {
    c.text += t;
    c.tokens.push_back({t, lp, {}});
  }
  return c;
}

TEST(BlackBoxCompare, ReportsFirstDivergenceAndBitwiseLogprobMismatches) {
  const Completion ref = make({{"The", -0.1}, {" cat", -0.2}, {" sat", -0.3}});
  BlackBoxScenario s;
  add_group(s, ref,
            {ref, make({{"The", -0.1}, {" cat", -0.2}, {" ran", -0.9}}),
             make({{"The", -0.1}, {" cat", std::nextafter(-0.2, 0.0)}, {" sat", -0.3}})});
  EXPECT_EQ(s.groups, 1);
  EXPECT_EQ(s.requests, 4);
  EXPECT_EQ(s.max_unique, 2);  // the logprob-only difference has the same text and tokens
  EXPECT_EQ(s.diverging, 1);
  ASSERT_TRUE(s.divergence.has_value());
  EXPECT_EQ(s.divergence->token, 2);
  EXPECT_EQ(s.divergence->expected, " sat");
  EXPECT_EQ(s.divergence->actual, " ran");
  EXPECT_EQ(s.logprob_mismatches, 1);
  EXPECT_EQ(s.first_logprob_mismatch, 1);
  EXPECT_FALSE(s.passed());

  // Without tokens, texts are compared byte by byte.
  Completion a, b;
  a.ok = b.ok = true;
  a.text = "hello world";
  b.text = "hello there";
  BlackBoxScenario t;
  add_group(t, a, {b});
  ASSERT_TRUE(t.divergence.has_value());
  EXPECT_TRUE(t.divergence->by_bytes);
  EXPECT_EQ(t.divergence->token, 6);
}

TEST(BlackBoxPrompts, ReadsOnePromptPerLine) {
  const std::string path = ::testing::TempDir() + "verify_prompts.txt";
  std::ofstream(path) << "first prompt\n\n  \nsecond\\nwith a newline\r\n";
  auto p = read_prompts(path);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[1], "second\nwith a newline");
  EXPECT_FALSE(read_prompts(path + ".missing").ok());
  EXPECT_GE(builtin_prompts().size(), 5u);
}

}  // namespace
}  // namespace invar::verify
