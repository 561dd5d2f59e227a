// The `invar` command line: generate, chat, serve, bench serve, verify.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "engine/fingerprint.h"

int main(int argc, char** argv) {
  CLI::App app{"invar: a batch-invariant LLM inference engine"};
  app.set_version_flag("--version", std::string("invar ") + invar::engine::build_id());
  app.require_subcommand(1);
  // --help shows every option's default (subcommands inherit this).
  app.option_defaults()->always_capture_default();
  invar::cli::add_generate(app);
  invar::cli::add_serve(app);
  invar::cli::add_chat(app);
  invar::cli::add_bench(app);
  invar::cli::add_verify(app);
  CLI11_PARSE(app, argc, argv);
  return invar::cli::exit_code();
}
