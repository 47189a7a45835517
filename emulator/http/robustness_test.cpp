// Requests that do not look like the SDKs' (README "Guarantees"): no body and no length, clients
// that stall, more long-polls than threads may hold. Raw sockets, so nothing is smoothed over.
#include "http/test_fixture.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

namespace kiln::http::testing {
namespace {

// A loopback connection whose receives give up after `recv_timeout_s` (then read() returns -1).
class RawConnection {
 public:
  RawConnection(int port, int recv_timeout_s) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{recv_timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) { ASSERT_EQ(::write(fd_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size())); }
  // Everything until the peer closes or the receive timeout; `closed` tells which.
  std::string read_all(bool& closed) {
    std::string out;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        continue;
      }
      closed = n == 0;
      return out;
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

int port_of(const std::string& base_url) { return std::stoi(base_url.substr(base_url.rfind(':') + 1)); }

class RobustnessTest : public HttpTest {
  void configure(ServerOptions& o) override {
    o.io_timeout_seconds = 1;
    o.http_threads = 4;  // so two held polls are the limit
    o.poll_hold_seconds = 3;
  }
};

// RFC 9112 section 6.3: no Content-Length, no Transfer-Encoding: the body is empty. Answered at once,
// not after the read timeout: the receive below gives up long before a 30 s hang would end.
TEST_F(RobustnessTest, APostWithNeitherBodyNorLengthIsAnsweredAsAnEmptyBody) {
  post("/_kiln/clock", {{"advance_seconds", 0}});
  RawConnection c(port_of(server->base_url()), 5);
  ASSERT_TRUE(c.connected());
  c.send("POST /_kiln/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  bool closed = false;
  const std::string answer = c.read_all(closed);
  EXPECT_TRUE(closed) << "the connection was still open when the receive timed out";
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  // An API route reached the same way gets its usual 400 naming what is missing.
  RawConnection c2(port_of(server->base_url()), 5);
  c2.send("POST /api/v1/retrieve_future HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: tml-test\r\nConnection: close\r\n\r\n");
  const std::string answer2 = c2.read_all(closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(answer2.rfind("HTTP/1.1 400", 0), 0u) << answer2;
  EXPECT_NE(answer2.find("request_id"), std::string::npos) << answer2;
}

// A client that sends half a request and stops is answered after the I/O timeout (1 s here) and
// cut off once the keep-alive idle time (5 s) passes: the thread it held serves others again.
TEST_F(RobustnessTest, AStalledClientIsDisconnectedAfterTheIoTimeout) {
  std::vector<std::unique_ptr<RawConnection>> stalled;
  for (int i = 0; i < 6; ++i) {  // more than the 4 connection threads
    stalled.push_back(std::make_unique<RawConnection>(port_of(server->base_url()), 10));
    stalled.back()->send("POST /api/v1/create_session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"ta");
  }
  for (auto& c : stalled) {
    bool closed = false;
    c->read_all(closed);
    EXPECT_TRUE(closed) << "a stalled connection was still open after 10 s";
  }
  EXPECT_EQ(get("/_kiln/state").first, 200);
}

// Held long-polls are bounded (half the connection threads); the excess is answered at once with
// the retryable 408 try_again instead of holding a thread.
TEST_F(RobustnessTest, LongPollsBeyondTheBoundAreAnsweredAtOnceWithTryAgain) {
  const std::string id = model();
  post("/_kiln/progression", {{"mode", "after_polls"}, {"polls", 1000}});
  auto [s, fut] = post("/api/v1/forward", {{"model_id", id}, {"seq_id", 1},
                                           {"forward_input", {{"data", {datum({1, 2, 3})}}, {"loss_fn", "cross_entropy"}}}});
  ASSERT_EQ(s, 200) << fut;
  const std::string rid = fut["request_id"];
  std::vector<std::thread> holders;
  std::atomic<int> held_answers{0};
  for (int i = 0; i < 2; ++i)
    holders.emplace_back([&] {
      httplib::Client c(server->base_url());
      c.set_default_headers({{"X-API-Key", "tml-test"}});
      c.set_read_timeout(std::chrono::seconds(60));
      auto r = c.Post("/api/v1/retrieve_future", json{{"request_id", rid}}.dump(), "application/json");
      if (r && r->status == 408) held_answers.fetch_add(1);
    });
  // Wait until both hold (their polls are counted), then a third poll must not wait the 3 s hold.
  for (int i = 0; i < 500; ++i) {
    auto st = get("/_kiln/state").second;
    int polls = 0;
    for (const auto& f : st["futures"]["pending"]) if (f["request_id"] == rid) polls = f["polls"];
    if (polls >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  httplib::Client third(server->base_url());
  third.set_default_headers({{"X-API-Key", "tml-test"}});
  third.set_read_timeout(std::chrono::milliseconds(1500));  // below the 3 s hold
  auto r = third.Post("/api/v1/retrieve_future", json{{"request_id", rid}}.dump(), "application/json");
  ASSERT_TRUE(r) << "the poll beyond the bound was held";
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(json::parse(r->body)["type"], "try_again");
  post("/_kiln/progression", {{"mode", "immediate"}});
  for (auto& t : holders) t.join();
}

}  // namespace
}  // namespace kiln::http::testing
