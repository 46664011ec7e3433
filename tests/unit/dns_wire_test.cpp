// DNS message views and builders: valid queries decode, every malformed
// shape gets its verdict (FORMERR or drop), builders produce exact bytes.
#include "dns/wire.hpp"

#include <gtest/gtest.h>

#include "tests/support/dns_test_support.hpp"

namespace causeway::dns {
namespace {
using testing::Bytes;
using testing::make_query;
using testing::put16;
using testing::put_name;

// A header with the given counts, then `body`.
Bytes message(uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar, const Bytes& body, uint16_t flags = 0x0100) {
  Bytes b;
  put16(b, 0xbeef);
  put16(b, flags);
  put16(b, qd);
  put16(b, an);
  put16(b, ns);
  put16(b, ar);
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

Bytes question(std::string_view name, uint16_t type = rrtype::kA) {
  Bytes b;
  put_name(b, name);
  put16(b, type);
  put16(b, kClassIn);
  return b;
}

TEST(WireHeader, ParsesEveryField) {
  const Bytes q = message(1, 2, 3, 4, {}, 0x8580 | 0x0003);
  const auto h = parse_header(q);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->id, 0xbeef);
  EXPECT_TRUE(h->qr());
  EXPECT_TRUE(h->aa());
  EXPECT_TRUE(h->rd());
  EXPECT_TRUE(h->ra());
  EXPECT_FALSE(h->tc());
  EXPECT_EQ(h->opcode(), 0);
  EXPECT_EQ(h->rcode(), 3);
  EXPECT_EQ(h->qdcount, 1);
  EXPECT_EQ(h->ancount, 2);
  EXPECT_EQ(h->nscount, 3);
  EXPECT_EQ(h->arcount, 4);
}

TEST(WireHeader, RefusesElevenBytes) { EXPECT_FALSE(parse_header(Bytes(11, 0))); }

TEST(ValidateQuery, AcceptsPlainQueryAndLowerCasesTheName) {
  const auto c = validate_query(make_query("WWW.Example.TEST", rrtype::kAaaa));
  ASSERT_TRUE(c.ok()) << c.reason;
  EXPECT_EQ(c.question.name, "www.example.test");
  EXPECT_EQ(c.question.qtype, rrtype::kAaaa);
  EXPECT_EQ(c.question.qclass, kClassIn);
  EXPECT_EQ(c.question.end, 12u + 18u + 4u);
  EXPECT_FALSE(c.edns);
}

TEST(ValidateQuery, DecodesTheOptRecord) {
  const auto c = validate_query(make_query("example.test", rrtype::kTxt, {.edns_size = 1232}));
  ASSERT_TRUE(c.ok()) << c.reason;
  ASSERT_TRUE(c.edns);
  EXPECT_EQ(c.edns->udp_payload_size, 1232);
  EXPECT_EQ(c.edns->version, 0);
  EXPECT_FALSE(c.edns->dnssec_ok);
}

TEST(ValidateQuery, AcceptsTheRootName) {
  const auto c = validate_query(make_query("", rrtype::kNs));
  ASSERT_TRUE(c.ok()) << c.reason;
  EXPECT_EQ(c.question.name, "");
}

TEST(ValidateQuery, EscapesDotsAndUnprintableBytesInsideLabels) {
  Bytes body = {3, 'a', '.', 'b', 2, 0x01, '\\', 4, 'c', 'o', 'r', 'p', 0};
  put16(body, 1);
  put16(body, 1);
  const auto c = validate_query(message(1, 0, 0, 0, body));
  ASSERT_TRUE(c.ok()) << c.reason;
  EXPECT_EQ(c.question.name, "a\\.b.\\001\\\\.corp");
  // So routing on the text cannot confuse one label "x.corp" with two labels.
  EXPECT_FALSE(name_in_domain("x\\.corp", "corp"));
  EXPECT_TRUE(name_in_domain("x.corp", "corp"));
  EXPECT_TRUE(name_in_domain("x\\\\.corp", "corp"));  // an escaped backslash, then a real dot
}

TEST(ValidateQuery, DropsTruncatedHeader) {
  for (size_t n = 0; n < kHeaderSize; ++n) {
    const Bytes q(n, 0);
    const auto c = validate_query(q);
    EXPECT_EQ(c.verdict, QueryVerdict::kDrop) << n;
    EXPECT_TRUE(make_error_response(q, Rcode::kFormErr).empty()) << n;
  }
}

TEST(ValidateQuery, DropsResponses) {
  const auto c = validate_query(message(1, 0, 0, 0, question("a.test"), 0x8180));
  EXPECT_EQ(c.verdict, QueryVerdict::kDrop);
  EXPECT_EQ(c.reason, "a response, not a query");
}

TEST(ValidateQuery, FormErrOnZeroQuestions) {
  const auto c = validate_query(message(0, 0, 0, 0, {}));
  EXPECT_EQ(c.verdict, QueryVerdict::kFormErr);
  EXPECT_EQ(c.reason, "no question");
}

TEST(ValidateQuery, FormErrOnTwoQuestions) {
  Bytes body = question("a.test");
  const Bytes second = question("b.test");
  body.insert(body.end(), second.begin(), second.end());
  EXPECT_EQ(validate_query(message(2, 0, 0, 0, body)).reason, "more than one question");
}

TEST(ValidateQuery, FormErrOnCountsTheSizeCannotHold) {
  const auto c = validate_query(message(1, 0xffff, 0xffff, 0xffff, question("a.test")));
  EXPECT_EQ(c.verdict, QueryVerdict::kFormErr);
  EXPECT_EQ(c.reason, "section counts larger than the message");
  // One record too many for the bytes present.
  const auto d = validate_query(message(1, 0, 0, 1, question("a.test")));
  EXPECT_EQ(d.verdict, QueryVerdict::kFormErr);
}

TEST(ValidateQuery, FormErrOnLabelLengthOver63) {
  for (uint8_t len : {uint8_t{64}, uint8_t{0x80}, uint8_t{0xbf}}) {
    Bytes body(1, len);
    body.resize(1 + 70, 'a');
    body.push_back(0);
    put16(body, 1);
    put16(body, 1);
    EXPECT_EQ(validate_query(message(1, 0, 0, 0, body)).reason, "label longer than 63 bytes") << int{len};
  }
}

TEST(ValidateQuery, AcceptsLabelOf63AndRefusesNameOver255) {
  const std::string l63(63, 'a');
  EXPECT_TRUE(validate_query(make_query(l63 + ".test", 1)).ok());
  // 4 labels of 63 = 256 wire bytes with the root.
  const std::string name = l63 + "." + l63 + "." + l63 + "." + l63;
  EXPECT_EQ(validate_query(make_query(name, 1)).reason, "name longer than 255 bytes");
  // 253 characters of text (255 on the wire) is the longest legal name.
  const std::string longest = l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b');
  EXPECT_TRUE(validate_query(make_query(longest, 1)).ok());
}

TEST(ValidateQuery, FormErrOnLabelRunningPastTheEnd) {
  const Bytes body = {10, 'a', 'b'};
  EXPECT_EQ(validate_query(message(1, 0, 0, 0, body)).verdict, QueryVerdict::kFormErr);
}

TEST(ValidateQuery, FormErrOnMissingTypeAndClass) {
  Bytes body;
  put_name(body, "a.test");
  body.push_back(0);
  EXPECT_EQ(validate_query(message(1, 0, 0, 0, body)).reason, "question runs past the end");
}

TEST(ValidateQuery, FormErrOnPointerToItself) {
  const Bytes body = {0xc0, 12, 0, 1, 0, 1};
  EXPECT_EQ(validate_query(message(1, 0, 0, 0, body)).reason, "compression pointer does not point backwards");
}

TEST(ValidateQuery, FormErrOnForwardPointer) {
  const Bytes body = {0xc0, 20, 0, 1, 0, 1, 1, 'a', 0};
  EXPECT_EQ(validate_query(message(1, 0, 0, 0, body)).reason, "compression pointer does not point backwards");
}

TEST(ValidateQuery, FormErrOnCompressionLoopThroughEarlierLabels) {
  // The question "a" then a pointer back to "a": every pointer points
  // backwards, yet following them loops. The answer record's name is where
  // the loop starts.
  Bytes body = question("a.test");  // offset 12
  body.push_back(1);                // offset 12+12=24: label "b"
  body.push_back('b');
  body.push_back(0xc0);  // offset 26: pointer to 24 -> "b" -> pointer to 24 ...
  body.push_back(24);
  put16(body, 1);
  put16(body, 1);
  put16(body, 0);
  put16(body, 0);
  put16(body, 0);
  put16(body, 0);
  EXPECT_EQ(validate_query(message(1, 1, 0, 0, body)).reason, "compression pointer does not point backwards");
}

TEST(ValidateQuery, AcceptsBackwardPointerInARecord) {
  Bytes body = question("a.test");
  body.push_back(0xc0);  // the record's owner is the question's name
  body.push_back(12);
  put16(body, rrtype::kA);
  put16(body, kClassIn);
  put16(body, 0);
  put16(body, 60);
  put16(body, 4);
  for (uint8_t b : {192, 0, 2, 1}) body.push_back(b);
  const auto c = validate_query(message(1, 1, 0, 0, body));
  EXPECT_TRUE(c.ok()) << c.reason;
}

TEST(ValidateQuery, FormErrOnRecordDataPastTheEnd) {
  Bytes body = question("a.test");
  body.push_back(0);
  put16(body, rrtype::kA);
  put16(body, kClassIn);
  put16(body, 0);
  put16(body, 60);
  put16(body, 40);  // RDLENGTH 40, 4 present
  for (uint8_t b : {192, 0, 2, 1}) body.push_back(b);
  EXPECT_EQ(validate_query(message(1, 0, 0, 1, body)).reason, "record data runs past the end");
}

TEST(ValidateQuery, FormErrOnTwoOptRecords) {
  Bytes body = question("a.test");
  for (int i = 0; i < 2; ++i) {
    body.push_back(0);
    put16(body, rrtype::kOpt);
    put16(body, 1232);
    put16(body, 0);
    put16(body, 0);
    put16(body, 0);
  }
  EXPECT_EQ(validate_query(message(1, 0, 0, 2, body)).reason, "more than one OPT record");
}

TEST(ValidateQuery, FormErrOnOversizedMessage) {
  Bytes q = make_query("a.test", 1);
  q.resize(kMaxMessageSize + 1, 0);
  EXPECT_EQ(validate_query(q).verdict, QueryVerdict::kFormErr);
}

TEST(QuestionName, IsLowerCasedDottedName) {
  EXPECT_EQ(question_name(make_query("Host.Causeway.Internal", 1)), "host.causeway.internal");
  EXPECT_FALSE(question_name(message(0, 0, 0, 0, {})));
  EXPECT_FALSE(question_name(Bytes(5, 0)));
}

TEST(ErrorResponse, EchoesIdOpcodeRdAndQuestion) {
  const Bytes q = make_query("Example.TEST", rrtype::kMx, {.id = 0xabcd, .flags = 0x0100, .edns_size = 1232});
  const Bytes r = make_error_response(q, Rcode::kServFail);
  Bytes expected;
  put16(expected, 0xabcd);
  put16(expected, 0x8182);  // QR, RD, RA, SERVFAIL
  put16(expected, 1);
  put16(expected, 0);
  put16(expected, 0);
  put16(expected, 0);
  put_name(expected, "Example.TEST");  // the guest's case, byte for byte
  put16(expected, rrtype::kMx);
  put16(expected, kClassIn);
  EXPECT_EQ(r, expected);
}

TEST(ErrorResponse, EveryRcode) {
  const Bytes q = make_query("a.test", 1, {.flags = 0});
  for (Rcode rc : {Rcode::kFormErr, Rcode::kServFail, Rcode::kNotImp, Rcode::kRefused}) {
    const Bytes r = make_error_response(q, rc);
    ASSERT_GE(r.size(), kHeaderSize);
    EXPECT_EQ(r[2], 0x80) << to_string(rc);  // QR, RD clear as asked
    EXPECT_EQ(r[3], 0x80 | static_cast<uint8_t>(rc)) << to_string(rc);
  }
}

TEST(ErrorResponse, OmitsAnUnreadableQuestion) {
  const Bytes body = {0xc0, 12, 0, 1, 0, 1};  // looping pointer
  const Bytes r = make_error_response(message(1, 0, 0, 0, body), Rcode::kFormErr);
  ASSERT_EQ(r.size(), kHeaderSize);
  EXPECT_EQ(r[4], 0);
  EXPECT_EQ(r[5], 0);  // QDCOUNT 0
  EXPECT_EQ(r[3] & 0x0f, 1);
}

TEST(ErrorResponse, ReEncodesAQuestionCompressedIntoTheHeader) {
  // Offset 2 holds 0x01 0x00 (RD set, nothing else), then QDCOUNT's high
  // byte 0x00: read as a name, that is one label "\000". Legal, if odd.
  Bytes body = {0xc0, 0x02};
  put16(body, rrtype::kA);
  put16(body, kClassIn);
  const Bytes q = message(1, 0, 0, 0, body, 0x0100);
  const auto c = validate_query(q);
  ASSERT_TRUE(c.ok()) << c.reason;
  EXPECT_EQ(c.question.name, "\\000");
  const Bytes r = make_error_response(q, Rcode::kRefused);
  const Bytes tail(r.begin() + kHeaderSize, r.end());
  EXPECT_EQ(tail, (Bytes{1, 0, 0, 0, 1, 0, 1}));  // the name written out, then QTYPE, QCLASS
  EXPECT_EQ(testing::get16(r, 4), 1);
}

TEST(ErrorResponse, KeepsTheOpcode) {
  const Bytes q = make_query("a.test", 1, {.flags = 0x2800});  // opcode 5 (UPDATE)
  const Bytes r = make_error_response(q, Rcode::kNotImp);
  EXPECT_EQ(parse_header(r)->opcode(), 5);
  EXPECT_TRUE(parse_header(r)->qr());
}

TEST(IdAndFlags, SetIdRewritesOnlyTheFirstTwoBytes) {
  Bytes q = make_query("a.test", 1, {.id = 1});
  const Bytes before = q;
  set_id(q, 0xfeed);
  EXPECT_EQ(get_id(q), 0xfeed);
  EXPECT_EQ(q[0], 0xfe);
  EXPECT_EQ(q[1], 0xed);
  EXPECT_TRUE(std::equal(q.begin() + 2, q.end(), before.begin() + 2));
  Bytes tiny(1, 7);
  set_id(tiny, 0xffff);  // no header: untouched, no crash
  EXPECT_EQ(tiny[0], 7);
}

TEST(IdAndFlags, SetTcTogglesOnlyTheTcBit) {
  Bytes q = make_query("a.test", 1, {.flags = 0x0100});
  set_tc(q);
  EXPECT_EQ(q[2], 0x03);
  EXPECT_TRUE(parse_header(q)->tc());
  set_tc(q, false);
  EXPECT_EQ(q[2], 0x01);
}

TEST(Edns, FindAndClampTheUdpSize) {
  Bytes q = make_query("a.test", 1, {.edns_size = 65000});
  const auto e = find_edns(q);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->udp_payload_size, 65000);
  EXPECT_TRUE(clamp_edns_udp_size(q, *e, 4096));
  EXPECT_EQ(find_edns(q)->udp_payload_size, 4096);
  EXPECT_FALSE(clamp_edns_udp_size(q, *find_edns(q), 4096));
  EXPECT_FALSE(find_edns(make_query("a.test", 1)));
}

TEST(AppendName, EncodesAndRefusesBadNames) {
  Bytes out;
  ASSERT_TRUE(append_name(out, "a.bc."));
  EXPECT_EQ(out, (Bytes{1, 'a', 2, 'b', 'c', 0}));
  out.clear();
  ASSERT_TRUE(append_name(out, "a\\.b.\\001"));
  EXPECT_EQ(out, (Bytes{3, 'a', '.', 'b', 1, 1, 0}));
  out.clear();
  ASSERT_TRUE(append_name(out, ""));
  EXPECT_EQ(out, (Bytes{0}));
  out.clear();
  EXPECT_FALSE(append_name(out, "a..b"));
  EXPECT_FALSE(append_name(out, std::string(64, 'x')));
  EXPECT_FALSE(append_name(out, "a\\"));
  EXPECT_FALSE(append_name(out, "a\\99"));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace causeway::dns
