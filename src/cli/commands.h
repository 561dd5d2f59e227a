// Subcommands of the `invar` command line. Each registers itself on the app and records its
// exit status.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace invar::cli {

void add_generate(CLI::App& app);
void add_serve(CLI::App& app);
void add_chat(CLI::App& app);
// `invar bench` and its subcommands (serve: a load generator against a running server).
void add_bench(CLI::App& app);
// `invar verify`: batch-invariance audit, in-process (--model) or of a server (--url).
void add_verify(CLI::App& app);

// The exit status set by the subcommand that ran.
int exit_code();
void set_exit_code(int code);

}  // namespace invar::cli
