#include "netstack/mirror/converge.hpp"

namespace causeway::netstack::mirror {

ConvergeResult converge(StateApplier& guest, const DesiredFn& desired, int max_passes) {
  ConvergeResult rec;
  auto keep = [&rec](OpError e) {
    ++rec.errors_total;
    if (rec.errors.size() < kMaxErrorsKept) rec.errors.push_back(std::move(e));
  };
  for (int pass = 0; pass < max_passes; ++pass) {
    NetState actual;
    if (auto err = guest.read_managed(actual)) {
      rec.read_failed = true;
      keep(OpError{"read guest state", *err});
      return rec;
    }
    rec.actual = std::move(actual);
    rec.unmanaged = guest.unmanaged_links();
    const NetState want = desired(rec.unmanaged);
    const auto ops = diff(want, rec.actual);
    rec.passes = static_cast<size_t>(pass) + 1;
    if (ops.empty()) {
      rec.converged = true;
      return rec;
    }
    if (pass == max_passes - 1) {
      // Applied, yet still different: something in the guest that mirrored mode
      // does not manage is in the way (the kernel answered "exists").
      for (const auto& op : ops)
        keep(OpError{op.describe(), "still differs after " + std::to_string(pass) +
                                        " passes: a route or address mirrored mode does not manage is in "
                                        "the way (the NAT link's default route?)"});
      return rec;
    }
    const ApplyReport report = guest.apply(ops);
    rec.changes += report.applied;
    for (const auto& e : report.errors) keep(e);
    if (!report.errors.empty()) {
      // One more read so the guest view shown by ctl is the state after this sync.
      NetState after;
      if (!guest.read_managed(after)) rec.actual = std::move(after);
      return rec;
    }
  }
  return rec;
}

}  // namespace causeway::netstack::mirror
