// The HTTP transport (src/server/http_server.h) with a stub handler, over real loopback
// sockets: keep-alive, chunked streams, body limits, garbage, and disconnect detection.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <thread>

#include "server/http_server.h"

namespace invar::server {
namespace {

using tcp = net::ip::tcp;
using namespace std::chrono_literals;

// A server whose handler answers /hello, streams /stream (three chunks, 20 ms apart) and holds
// /hold open until the client leaves.
class StubServer {
 public:
  StubServer() {
    HttpOptions options;
    options.port = 0;
    options.max_body_bytes = 1024;
    http_ = std::make_unique<HttpServer>(
        ioc_, options, [this](HttpRequest&& r, auto ex) { handle(std::move(r), std::move(ex)); },
        counters_);
    EXPECT_TRUE(http_->listen().ok());
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~StubServer() {
    work_.reset();
    ioc_.stop();
    thread_.join();
  }
  uint16_t port() const { return http_->port(); }
  std::atomic<int> disconnects{0};
  ServerCounters counters_;

 private:
  void handle(HttpRequest&& req, std::shared_ptr<Exchange> ex) {
    if (req.target() == "/hello") {
      return ex->respond(http::status::ok, "text/plain", "hello " + req.body());
    }
    if (req.target() == "/hold") {
      ex->on_disconnect([this] { disconnects++; });
      return;  // never answered: only the client leaving ends it
    }
    ex->begin_stream("text/event-stream");
    auto timer = std::make_shared<net::steady_timer>(ex->executor());
    auto step = std::make_shared<std::function<void(int)>>();
    *step = [ex, timer, step](int i) {
      if (i == 3) {
        ex->end_stream();
        *step = nullptr;  // break the cycle
        return;
      }
      ex->send_chunk("data: " + std::to_string(i) + "\n\n");
      timer->expires_after(20ms);
      timer->async_wait([step, i](boost::system::error_code) {
        if (*step) (*step)(i + 1);
      });
    };
    (*step)(0);
  }

  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(ioc_);
  std::unique_ptr<HttpServer> http_;
  std::thread thread_;
};

// A blocking client socket.
struct Client {
  explicit Client(uint16_t port) : socket(ioc) {
    socket.connect({net::ip::make_address("127.0.0.1"), port});
  }
  void send(const std::string& s) { net::write(socket, net::buffer(s)); }
  // Reads until `marker` has arrived; returns everything read so far.
  std::string read_until(const std::string& marker) {
    boost::system::error_code ec;
    net::read_until(socket, net::dynamic_buffer(data), marker, ec);
    return data;
  }
  std::string read_all() {
    boost::system::error_code ec;
    net::read(socket, net::dynamic_buffer(data), ec);
    return data;
  }
  net::io_context ioc;
  tcp::socket socket;
  std::string data;
};

TEST(ServerHttp, KeepAliveServesSeveralRequests) {
  StubServer server;
  Client c(server.port());
  c.send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(c.read_until("hello abc").find("HTTP/1.1 200 OK"), std::string::npos);
  c.data.clear();
  c.send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz");
  std::string second = c.read_all();  // the server closes after it
  EXPECT_NE(second.find("hello xyz"), std::string::npos);
  EXPECT_EQ(server.counters_.http_requests.load(), 2u);
}

TEST(ServerHttp, StreamsChunkedThenKeepsTheConnection) {
  StubServer server;
  Client c(server.port());
  c.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got = c.read_until("0\r\n\r\n");
  EXPECT_NE(got.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(got.find("Content-Type: text/event-stream"), std::string::npos);
  EXPECT_NE(got.find("9\r\ndata: 0\n\n\r\n"), std::string::npos);  // chunk framing
  EXPECT_NE(got.find("9\r\ndata: 2\n\n\r\n"), std::string::npos);
  c.data.clear();
  c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(c.read_until("hello ").find("200 OK"), std::string::npos);
}

TEST(ServerHttp, Http10StreamEndsWithClose) {
  StubServer server;
  Client c(server.port());
  c.send("GET /stream HTTP/1.0\r\n\r\n");
  std::string got = c.read_all();
  EXPECT_EQ(got.find("chunked"), std::string::npos);
  EXPECT_NE(got.find("data: 0\n\ndata: 1\n\ndata: 2\n\n"), std::string::npos);
}

TEST(ServerHttp, OversizedBodyIs413) {
  StubServer server;
  Client c(server.port());
  c.send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
  std::string got = c.read_all();
  EXPECT_NE(got.find("HTTP/1.1 413"), std::string::npos) << got;
  EXPECT_NE(got.find("request_too_large"), std::string::npos);

  Client chunked(server.port());  // no Content-Length: the limit applies while reading
  chunked.send("POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" +
               std::string(2048, 'a') + "\r\n0\r\n\r\n");
  EXPECT_NE(chunked.read_all().find("HTTP/1.1 413"), std::string::npos);
}

TEST(ServerHttp, GarbageIs400AndTheServerGoesOn) {
  StubServer server;
  {
    Client c(server.port());
    c.send("\x01\x02 nonsense\r\n\r\n");
    EXPECT_NE(c.read_all().find("HTTP/1.1 400"), std::string::npos);
  }
  Client ok(server.port());
  ok.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(ok.read_until("hello ").find("200 OK"), std::string::npos);
}

TEST(ServerHttp, ExpectContinue) {
  StubServer server;
  Client c(server.port());
  c.send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_NE(c.read_until("\r\n\r\n").find("100 Continue"), std::string::npos);
  c.send("hi");
  EXPECT_NE(c.read_until("hello hi").find("200 OK"), std::string::npos);
}

TEST(ServerHttp, ClientLeavingIsNoticedWhileWaiting) {
  StubServer server;
  {
    Client c(server.port());
    c.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 100 && server.counters_.http_requests.load() == 0; ++i)
      std::this_thread::sleep_for(10ms);
  }  // closed without reading anything
  for (int i = 0; i < 200 && server.disconnects.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server.disconnects.load(), 1);
  for (int i = 0; i < 200 && server.counters_.connections_open.load() != 0; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server.counters_.connections_open.load(), 0);
}

}  // namespace
}  // namespace invar::server
