#include "base/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace causeway {

bool init_logging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to `off`; only accept "off" when asked for.
  if (lvl == spdlog::level::off && level != "off") return false;
  auto logger = spdlog::stderr_color_mt("causeway");
  logger->set_pattern("causeway: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(lvl);
  return true;
}

}  // namespace causeway
