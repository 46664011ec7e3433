#include "dns/host_config.hpp"

#include <boost/system/errc.hpp>
#include <algorithm>
#include <charconv>

namespace causeway::dns {
namespace {

namespace errc = boost::system::errc;

boost::system::error_code invalid() { return errc::make_error_code(errc::invalid_argument); }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    const size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// glibc's MATCH(): the keyword, then a space or a tab.
bool keyword(std::string_view line, std::string_view word) {
  return line.size() > word.size() && line.starts_with(word) && (line[word.size()] == ' ' || line[word.size()] == '\t');
}

bool parse_int(std::string_view text, int& out) {
  int v = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size() || v < 0) return false;
  out = v;
  return true;
}

// An address with an optional %zone, no port.
boost::system::result<DnsServer> parse_address(std::string_view text) {
  DnsServer s;
  std::string_view addr = text;
  if (const size_t pct = text.find('%'); pct != std::string_view::npos) {
    s.scope = std::string(text.substr(pct + 1));
    addr = text.substr(0, pct);
    if (s.scope.empty()) return invalid();
  }
  boost::system::error_code ec;
  s.address = boost::asio::ip::make_address(std::string(addr), ec);
  if (ec) return invalid();
  if (!s.scope.empty() && !s.address.is_v6()) return invalid();
  return s;
}

}  // namespace

std::string DnsServer::to_string() const {
  std::string host = address.to_string();
  if (!scope.empty()) host += "%" + scope;
  if (address.is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(port);
}

boost::system::result<DnsServer> parse_dns_server(std::string_view text) {
  std::string_view host = text;
  std::string_view port;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return invalid();
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':' || rest.size() < 2) return invalid();
      port = rest.substr(1);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {  // IPv4 with a port
    const size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  auto server = parse_address(host);
  if (!server) return server.error();
  if (!port.empty()) {
    int p = 0;
    if (!parse_int(port, p) || p < 1 || p > 65535) return invalid();
    server->port = static_cast<uint16_t>(p);
  }
  return server;
}

HostDnsConfig parse_resolv_conf(std::string_view text) {
  HostDnsConfig cfg;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    auto words = tokens(line);
    // Like glibc, a value ends at the first comment character.
    for (size_t i = 1; i < words.size(); ++i) {
      if (words[i][0] == '#' || words[i][0] == ';') {
        words.resize(i);
        break;
      }
    }
    if (words.size() < 2) continue;
    if (keyword(line, "nameserver")) {
      if (cfg.servers.size() >= kMaxServers) continue;
      // resolv.conf has no ports: "nameserver 192.0.2.1:53" is garbage to glibc too.
      auto server = parse_address(words[1]);
      if (server) cfg.servers.push_back(*server);
    } else if (keyword(line, "domain") || keyword(line, "search")) {
      cfg.search.clear();
      const size_t last = keyword(line, "domain") ? 2 : words.size();
      for (size_t i = 1; i < last && i < words.size() && cfg.search.size() < kMaxSearch; ++i) {
        std::string d = normalize_domain(words[i]);
        if (!d.empty()) cfg.search.push_back(std::move(d));
      }
    } else if (keyword(line, "options")) {
      for (size_t i = 1; i < words.size(); ++i) {
        const std::string_view opt = words[i];
        int v = 0;
        if (opt.starts_with("ndots:") && parse_int(opt.substr(6), v)) {
          cfg.ndots = std::min(v, 15);  // RES_MAXNDOTS
        } else if (opt.starts_with("timeout:") && parse_int(opt.substr(8), v)) {
          cfg.timeout_s = std::clamp(v, 1, 30);  // RES_MAXRETRANS
        } else if (opt.starts_with("attempts:") && parse_int(opt.substr(9), v)) {
          cfg.attempts = std::clamp(v, 1, 5);  // RES_MAXRETRY
        } else if (opt == "rotate") {
          cfg.rotate = true;
        }
      }
    }
  }
  if (cfg.servers.empty()) {
    // glibc's res_init: no usable nameserver line means the local host.
    DnsServer local;
    local.address = boost::asio::ip::address_v4::loopback();
    cfg.servers.push_back(local);
  }
  return cfg;
}

boost::system::result<DnsRoute> parse_dns_route(std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) return invalid();
  DnsRoute r;
  const std::string_view domain = text.substr(0, eq);
  r.domain = normalize_domain(domain);
  if (r.domain.empty() && domain != ".") return invalid();
  if (r.domain.find("..") != std::string::npos || r.domain.starts_with('.')) return invalid();
  auto server = parse_dns_server(text.substr(eq + 1));
  if (!server) return server.error();
  r.server = *server;
  return r;
}

std::string normalize_domain(std::string_view domain) {
  if (domain.ends_with('.')) domain.remove_suffix(1);
  std::string out(domain);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace causeway::dns
