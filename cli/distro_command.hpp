// `causeway distro …`: making, listing, removing and exporting distributions (the images
// themselves are vmm/distro's business; this file is the command line and the terminal).
//
//   causeway distro create NAME [--suite S] [--include P,…] [--mirror URL] [--size SIZE] [--user U]
//   causeway distro import NAME ROOTFS.tar[.gz|.xz|.zst] [--size SIZE]
//   causeway distro list
//   causeway distro default [NAME]
//   causeway distro remove NAME
//   causeway distro export NAME FILE.tar
//
// Long work reports progress on stderr (one line rewritten in place on a terminal, plain
// lines otherwise; --quiet: none). SIGINT, SIGTERM and SIGHUP stop it cleanly: the handler
// only sets a flag the work polls, and the work removes what it made.
//
// Thread safety: main thread only.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace causeway::cli {

struct DistroCommand {
  CLI::App* app = nullptr;
  CLI::App* create = nullptr;
  CLI::App* import = nullptr;
  CLI::App* list = nullptr;
  CLI::App* remove = nullptr;
  CLI::App* default_ = nullptr;
  CLI::App* export_ = nullptr;

  std::string name;
  std::string file;  // import: the tarball; export: the output
  std::string size;
  std::string suite = "bookworm";
  std::vector<std::string> include;
  std::string mirror;
  std::string user;
  std::string variant = "minbase";
  bool quiet = false;
};

void define_distro(CLI::App& parent, DistroCommand& c);
int run_distro(DistroCommand& c);

}  // namespace causeway::cli
