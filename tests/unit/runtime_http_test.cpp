// The HTTP server over real sockets on 127.0.0.1 (port 0): routes, limits, keep-alive, the
// connection bound, timeouts, streaming, disconnects, auth, static files, stop. The client is a
// plain socket with a small response reader written here, so the server is checked against
// bytes on the wire rather than against a second implementation. Every wait is bounded; a
// timeout only ever fails a test that would otherwise hang.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/http_server.hpp"
#include "tests/http_test_client.hpp"

namespace glam {
namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using testing::http_client;
using testing::http_reply;
using testing::lower;

// Generous: these bound waits for things that happen in milliseconds.
constexpr auto wait_limit = 10s;

template <class Predicate>
bool wait_for(Predicate p, std::chrono::milliseconds limit = wait_limit) {
  auto deadline = clock_type::now() + limit;
  while (clock_type::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return p();
}

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: test\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         extra + "\r\n" + body;
}

std::optional<http_reply> fetch(int port, const std::string& request) {
  http_client c(port);
  if (!c.connected() || !c.send(request)) return std::nullopt;
  return c.read_reply();
}

http_response text(std::string body, int status = 200) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

// A server with a few plain routes, started on a free loopback port.
std::unique_ptr<http_server> make_server(http_server_options options = {},
                                         std::function<void(http_server&)> more = nullptr) {
  auto s = std::make_unique<http_server>(options);
  s->add_route("GET", "/hello", [](const http_request& rq, http_responder r) {
    auto who = rq.query_parameter("name");
    r.respond(text("hello " + who.value_or("world")));
  });
  s->add_route("POST", "/echo", [](const http_request& rq, http_responder r) { r.respond(text(rq.body)); });
  if (more) more(*s);
  s->start();
  return s;
}

// ---------------------------------------------------------------------------------------------

TEST(RuntimeHttp, RoutesAnswerAndOthersGet404Or405) {
  auto s = make_server();
  EXPECT_EQ(s->host(), "127.0.0.1");
  ASSERT_GT(s->port(), 0);
  struct row {
    std::string request;
    int status;
    std::string body_has;
  };
  const row rows[] = {
      {get("/hello"), 200, "hello world"},
      {get("/hello?name=gl%41m+x&other=1"), 200, "hello glAm x"},
      {post("/echo", "abc\r\n\r\ndef"), 200, "abc\r\n\r\ndef"},
      {post("/echo", ""), 200, ""},
      {get("/nope"), 404, "no route for /nope"},
      {get("/hello/"), 404, "no route"},
      {post("/hello", "x"), 405, "not allowed"},
      {"DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n", 405, "allowed: POST"},
      {"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "must start with '/'"},
  };
  for (const auto& r : rows) {
    auto got = fetch(s->port(), r.request);
    ASSERT_TRUE(got) << r.request;
    EXPECT_EQ(got->status, r.status) << r.request;
    EXPECT_NE(got->body.find(r.body_has), std::string::npos) << r.request << " -> " << got->body;
    if (r.status == 405) {
      EXPECT_FALSE(got->header("allow").empty());
    }
    if (r.status >= 400) {
      EXPECT_EQ(got->header("content-type"), "application/json");
      auto j = nlohmann::json::parse(got->body);
      EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    }
  }
  auto c = s->counters();
  EXPECT_EQ(c.requests, 9);
  EXPECT_EQ(c.responses_by_class[2], 4);
  EXPECT_EQ(c.responses_by_class[4], 5);
  EXPECT_EQ(c.connections_accepted, 9);
}

TEST(RuntimeHttp, HeadGetsHeadersWithoutABody) {
  auto s = make_server();
  http_client c(s->port());
  ASSERT_TRUE(c.send("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n" + get("/hello")));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 405);
  // No body follows the 405's headers: the next bytes are the second response.
  auto next = c.read_reply();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(next->body, "hello world");
}

TEST(RuntimeHttp, BodyAndHeaderLimits) {
  http_server_options o;
  o.limits.max_body_bytes = 1024;
  o.limits.max_header_bytes = 2048;
  auto s = make_server(o);
  struct row {
    const char* name;
    std::string request;
    int status;
    bool closes;
  };
  const row rows[] = {
      {"body_at_limit", post("/echo", std::string(1024, 'a')), 200, false},
      // Refused on the declared length, before any body byte is sent.
      {"declared_too_long", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n", 413, true},
      {"chunked_too_long",
       "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + std::string(1024, 'b') +
           "\r\n1\r\nc\r\n0\r\n\r\n",
       413, true},
      {"header_too_long", get("/hello", "X-Big: " + std::string(4096, 'h') + "\r\n"), 431, true},
      {"malformed_request_line", "GET /hello HTTP/9\r\n\r\n", 400, true},
      {"bad_content_length", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -4\r\n\r\n", 400, true},
  };
  for (const auto& r : rows) {
    http_client c(s->port());
    ASSERT_TRUE(c.send(r.request)) << r.name;
    auto got = c.read_reply();
    ASSERT_TRUE(got) << r.name;
    EXPECT_EQ(got->status, r.status) << r.name << ": " << got->body;
    if (r.closes) {
      EXPECT_EQ(lower(got->header("connection")), "close") << r.name;
      EXPECT_TRUE(c.closed_by_server()) << r.name;
    }
  }
  auto c = s->counters();
  EXPECT_EQ(c.bad_requests, 5);
  EXPECT_EQ(c.responses_by_class[4], 5);
}

TEST(RuntimeHttp, ExpectContinueIsAnsweredOrRefusedOnTheDeclaredLength) {
  http_server_options o;
  o.limits.max_body_bytes = 100;
  auto s = make_server(o);
  {
    http_client c(s->port());
    ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
    auto interim = c.read_head();
    ASSERT_TRUE(interim);
    EXPECT_EQ(interim->status, 100);
    ASSERT_TRUE(c.send("12345"));
    auto got = c.read_reply();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, 200);
    EXPECT_EQ(got->body, "12345");
  }
  {
    http_client c(s->port());
    ASSERT_TRUE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\nExpect: 100-continue\r\n\r\n"));
    auto got = c.read_head();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, 413);
  }
}

TEST(RuntimeHttp, KeepAliveServesManyRequestsOnOneConnectionInOrder) {
  auto s = make_server();
  http_client c(s->port());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(c.send(post("/echo", "n" + std::to_string(i))));
    auto got = c.read_reply();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->body, "n" + std::to_string(i));
    EXPECT_TRUE(got->header("connection").empty());
  }
  // Pipelined: three requests in one write, three answers in order.
  ASSERT_TRUE(c.send(post("/echo", "a") + get("/hello?name=b") + post("/echo", "c")));
  for (const char* want : {"a", "hello b", "c"}) {
    auto got = c.read_reply();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->body, want);
  }
  // Connection: close is honoured.
  ASSERT_TRUE(c.send(get("/hello", "Connection: close\r\n")));
  auto last = c.read_reply();
  ASSERT_TRUE(last);
  EXPECT_EQ(lower(last->header("connection")), "close");
  EXPECT_TRUE(c.closed_by_server());
  auto n = s->counters();
  EXPECT_EQ(n.connections_accepted, 1);
  EXPECT_EQ(n.requests, 9);

  // HTTP/1.0 closes unless asked to keep alive.
  http_client old(s->port());
  ASSERT_TRUE(old.send("GET /hello HTTP/1.0\r\n\r\n"));
  auto r = old.read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hello world");
  EXPECT_TRUE(old.closed_by_server());
  http_client old_kept(s->port());
  ASSERT_TRUE(old_kept.send("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  r = old_kept.read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(lower(r->header("connection")), "keep-alive");
  ASSERT_TRUE(old_kept.send("GET /hello?name=again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  r = old_kept.read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "hello again");
}

TEST(RuntimeHttp, ConnectionsOverTheBoundAreRefusedWith503AndCounted) {
  http_server_options o;
  o.limits.max_connections = 2;
  auto s = make_server(o);
  auto a = std::make_unique<http_client>(s->port());
  http_client b(s->port());
  ASSERT_TRUE(wait_for([&] { return s->counters().connections_open == 2; }));
  {
    http_client extra(s->port());
    auto got = extra.read_reply();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, 503);
    EXPECT_EQ(got->header("retry-after"), "1");
    EXPECT_TRUE(extra.closed_by_server());
  }
  EXPECT_EQ(s->counters().connections_refused, 1);
  // The held connections still work.
  ASSERT_TRUE(b.send(get("/hello")));
  auto got = b.read_reply();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  // Closing one frees its slot.
  a.reset();
  ASSERT_TRUE(wait_for([&] { return s->counters().connections_open == 1; }));
  auto fresh = fetch(s->port(), get("/hello"));
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->status, 200);
}

TEST(RuntimeHttp, IdleAndSlowClientsAreCutOffAndCounted) {
  http_server_options o;
  o.limits.idle_timeout = 300ms;
  o.limits.read_timeout = 400ms;
  auto s = make_server(o);
  {
    http_client idle(s->port());  // sends nothing
    EXPECT_TRUE(idle.closed_by_server());
  }
  {
    http_client half(s->port());  // half a request, then nothing
    ASSERT_TRUE(half.send("GET /hello HTTP/1.1\r\nHost:"));
    EXPECT_TRUE(half.closed_by_server());
  }
  {
    // A byte every 50 ms never lets the request complete: the whole request has one deadline.
    http_client drip(s->port());
    std::string request = get("/hello", "X-Pad: " + std::string(200, 'p') + "\r\n");
    bool cut = false;
    auto deadline = clock_type::now() + wait_limit;
    for (std::size_t i = 0; i < request.size() - 1 && clock_type::now() < deadline; ++i) {
      if (!drip.send(request.substr(i, 1))) {
        cut = true;
        break;
      }
      if (drip.closed_by_server(50ms)) {
        cut = true;
        break;
      }
    }
    EXPECT_TRUE(cut);
  }
  {
    // Between requests the idle timeout applies: answered, then closed when idle.
    http_client kept(s->port());
    ASSERT_TRUE(kept.send(get("/hello")));
    ASSERT_TRUE(kept.read_reply());
    EXPECT_TRUE(kept.closed_by_server());
  }
  ASSERT_TRUE(wait_for([&] { return s->counters().connections_open == 0; }));
  auto c = s->counters();
  EXPECT_EQ(c.idle_timeouts, 2);
  EXPECT_EQ(c.read_timeouts, 2);
  EXPECT_EQ(c.timeouts(), 4);
}

TEST(RuntimeHttp, ClientThatStopsReadingIsCutOffByTheWriteTimeout) {
  http_server_options o;
  o.limits.write_timeout = 300ms;
  auto s = make_server(o, [](http_server& srv) {
    srv.add_route("GET", "/big", [](const http_request&, http_responder r) { r.respond(text(std::string(16u << 20, 'x'))); });
  });
  http_client c(s->port(), 4096);
  ASSERT_TRUE(c.send(get("/big")));
  EXPECT_TRUE(wait_for([&] { return s->counters().write_timeouts == 1; }));
  EXPECT_TRUE(wait_for([&] { return s->counters().connections_open == 0; }));
}

TEST(RuntimeHttp, HandlersMayAnswerLaterFromAnotherThread) {
  std::vector<std::thread> workers;
  std::mutex m;
  auto s = make_server({}, [&](http_server& srv) {
    srv.add_route("GET", "/later", [&](const http_request& rq, http_responder r) {
      std::lock_guard<std::mutex> lock(m);
      workers.emplace_back([r, q = rq.query] {
        std::this_thread::sleep_for(30ms);
        r.respond(text("later " + q));
      });
    });
  });
  // Several at once on separate connections, and in sequence on one.
  std::vector<std::future<std::optional<http_reply>>> replies;
  for (int i = 0; i < 8; ++i)
    replies.push_back(std::async(std::launch::async, [&, i] { return fetch(s->port(), get("/later?" + std::to_string(i))); }));
  for (int i = 0; i < 8; ++i) {
    auto got = replies[i].get();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->body, "later " + std::to_string(i));
  }
  http_client c(s->port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.send(get("/later?k" + std::to_string(i))));
    auto got = c.read_reply();
    ASSERT_TRUE(got);
    EXPECT_EQ(got->body, "later k" + std::to_string(i));
  }
  std::lock_guard<std::mutex> lock(m);
  for (auto& w : workers) w.join();
}

TEST(RuntimeHttp, ServerSentEventsStreamFromAnotherThreadThenTheConnectionIsReused) {
  std::vector<std::thread> producers;
  std::mutex m;
  auto s = make_server({}, [&](http_server& srv) {
    srv.add_route("POST", "/stream", [&](const http_request&, http_responder r) {
      ASSERT_TRUE(r.begin_stream());
      std::lock_guard<std::mutex> lock(m);
      producers.emplace_back([r] {
        for (int i = 0; i < 5; ++i) {
          std::this_thread::sleep_for(5ms);
          EXPECT_TRUE(r.send_event("{\"token\": " + std::to_string(i) + "}"));
        }
        EXPECT_TRUE(r.send_event("two\nlines"));
        EXPECT_TRUE(r.send_event("[DONE]"));
        r.end_stream();
        EXPECT_FALSE(r.send_event("after the end"));
      });
    });
  });
  http_client c(s->port());
  ASSERT_TRUE(c.send(post("/stream", "{}")));
  auto head = c.read_head();
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-type"), "text/event-stream");
  EXPECT_EQ(lower(head->header("transfer-encoding")), "chunked");
  EXPECT_EQ(head->header("cache-control"), "no-cache");
  std::string events;
  for (;;) {
    auto chunk = c.read_chunk();
    ASSERT_TRUE(chunk);
    if (chunk->empty()) break;
    events += *chunk;
  }
  EXPECT_EQ(events,
            "data: {\"token\": 0}\n\ndata: {\"token\": 1}\n\ndata: {\"token\": 2}\n\ndata: {\"token\": 3}\n\n"
            "data: {\"token\": 4}\n\ndata: two\ndata: lines\n\ndata: [DONE]\n\n");
  ASSERT_TRUE(c.send(get("/hello")));
  auto next = c.read_reply();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "hello world");
  {
    std::lock_guard<std::mutex> lock(m);
    for (auto& p : producers) p.join();
  }
  EXPECT_EQ(s->counters().streams, 1);
  EXPECT_EQ(s->counters().connections_accepted, 1);
}

// What a handler holding a request sees of its client.
struct held_request {
  std::mutex m;
  std::condition_variable cv;
  std::unique_ptr<http_responder> responder;
  bool disconnected = false;

  void hold(http_responder r) {
    r.on_disconnect([this] {
      std::lock_guard<std::mutex> lock(m);
      disconnected = true;
      cv.notify_all();
    });
    std::lock_guard<std::mutex> lock(m);
    responder = std::make_unique<http_responder>(std::move(r));
    cv.notify_all();
  }
  bool wait_held() {
    std::unique_lock<std::mutex> lock(m);
    return cv.wait_for(lock, wait_limit, [&] { return responder != nullptr; });
  }
  bool wait_disconnected() {
    std::unique_lock<std::mutex> lock(m);
    return cv.wait_for(lock, wait_limit, [&] { return disconnected; });
  }
};

TEST(RuntimeHttp, ClientLeavingMidStreamIsNoticedWithoutAnotherWrite) {
  held_request held;
  auto s = make_server({}, [&](http_server& srv) {
    srv.add_route("GET", "/stream", [&](const http_request&, http_responder r) {
      r.begin_stream();
      r.send_event("first");
      held.hold(r);  // and then nothing more is written
    });
  });
  http_client c(s->port());
  ASSERT_TRUE(c.send(get("/stream")));
  ASSERT_TRUE(c.read_head());
  auto first = c.read_chunk();
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, "data: first\n\n");
  ASSERT_TRUE(held.wait_held());
  EXPECT_TRUE(held.responder->client_connected());
  c.close();
  EXPECT_TRUE(held.wait_disconnected());
  EXPECT_FALSE(held.responder->client_connected());
  EXPECT_FALSE(held.responder->send_event("too late"));
  EXPECT_EQ(s->counters().client_disconnects, 1);
  EXPECT_TRUE(wait_for([&] { return s->counters().connections_open == 0; }));
  // A callback registered after the fact runs at once.
  std::atomic<bool> ran{false};
  held.responder->on_disconnect([&] { ran = true; });
  EXPECT_TRUE(ran);
}

TEST(RuntimeHttp, ClientLeavingBeforeAnAsyncAnswerIsNoticed) {
  held_request held;
  auto s = make_server({}, [&](http_server& srv) {
    srv.add_route("GET", "/slow", [&](const http_request&, http_responder r) { held.hold(r); });
  });
  http_client c(s->port());
  ASSERT_TRUE(c.send(get("/slow")));
  ASSERT_TRUE(held.wait_held());
  c.close();
  EXPECT_TRUE(held.wait_disconnected());
  EXPECT_FALSE(held.responder->respond(text("nobody listens")));
  EXPECT_EQ(s->counters().client_disconnects, 1);
}

TEST(RuntimeHttp, StreamToAClientThatDoesNotReadIsBoundedAndClosed) {
  http_server_options o;
  o.limits.max_stream_backlog = 256u << 10;
  held_request held;
  auto s = make_server(o, [&](http_server& srv) {
    srv.add_route("GET", "/flood", [&](const http_request&, http_responder r) {
      r.begin_stream();
      held.hold(r);
    });
  });
  http_client c(s->port(), 4096);  // and never reads
  ASSERT_TRUE(c.send(get("/flood")));
  ASSERT_TRUE(held.wait_held());
  const std::string event(16u << 10, 'e');
  bool refused = false;
  auto deadline = clock_type::now() + wait_limit;
  // Socket buffers take a few MiB; beyond them the backlog bound must trip.
  for (int i = 0; i < 100000 && clock_type::now() < deadline; ++i) {
    if (!held.responder->send_event(event)) {
      refused = true;
      break;
    }
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(held.wait_disconnected());
  EXPECT_EQ(s->counters().slow_stream_clients, 1);
}

struct auth_case {
  const char* name;
  std::string header;
  int status;
};

class RuntimeHttpAuth : public ::testing::TestWithParam<auth_case> {};

TEST_P(RuntimeHttpAuth, BearerKeyIsChecked) {
  auto s = make_server({}, [](http_server& srv) {
    srv.add_route("POST", "/v1/completions",
                  require_bearer_token("sk-right-key", [](const http_request&, http_responder r) { r.respond(text("ok")); }));
  });
  auto got = fetch(s->port(), post("/v1/completions", "{}", GetParam().header));
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, GetParam().status);
  if (GetParam().status == 401) {
    EXPECT_EQ(got->header("www-authenticate"), "Bearer");
    auto j = nlohmann::json::parse(got->body);
    EXPECT_EQ(j["error"]["code"], "invalid_api_key");
    EXPECT_TRUE(j["error"]["param"].is_null());
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  } else {
    EXPECT_EQ(got->body, "ok");
  }
}

INSTANTIATE_TEST_SUITE_P(Table, RuntimeHttpAuth,
                         ::testing::Values(auth_case{"none", "", 401},
                                           auth_case{"wrong", "Authorization: Bearer sk-wrong-key\r\n", 401},
                                           auth_case{"prefix", "Authorization: Bearer sk-right\r\n", 401},
                                           auth_case{"longer", "Authorization: Bearer sk-right-key2\r\n", 401},
                                           auth_case{"empty", "Authorization: Bearer \r\n", 401},
                                           auth_case{"basic", "Authorization: Basic c2stcmlnaHQta2V5\r\n", 401},
                                           auth_case{"right", "Authorization: Bearer sk-right-key\r\n", 200},
                                           auth_case{"scheme_case", "authorization: bearer sk-right-key\r\n", 200}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RuntimeHttp, TokenComparisonIsExact) {
  const std::pair<const char*, bool> rows[] = {{"sk-right-key", true}, {"sk-right-kez", false}, {"sk-right-ke", false},
                                               {"sk-right-key ", false}, {"SK-RIGHT-KEY", false}, {"", false}};
  for (const auto& [given, ok] : rows) EXPECT_EQ(token_matches(given, "sk-right-key"), ok) << given;
  EXPECT_FALSE(token_matches("", ""));  // an empty key matches nothing
}

TEST(RuntimeHttp, EmptyBearerKeyIsRefused) {
  EXPECT_THROW(require_bearer_token("", [](const http_request&, http_responder) {}), std::invalid_argument);
}

// A directory with allowed files, a file not on the list, and a file beside the directory.
struct static_tree {
  std::filesystem::path root;
  static_tree() {
    root = std::filesystem::temp_directory_path() / ("glam_http_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(root);
    std::filesystem::create_directories(root / "www" / "lib");
    write(root / "www" / "app.js", "console.log('app');");
    write(root / "www" / "lib" / "d3.min.js", "d3");
    write(root / "www" / "index.html", "<html></html>");
    write(root / "www" / "private.txt", "not listed");
    write(root / "secret.txt", "outside");
  }
  ~static_tree() { std::filesystem::remove_all(root); }
  static void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p) << s; }
};

TEST(RuntimeHttp, StaticFilesServeTheListAndNothingElse) {
  static_tree tree;
  auto s = make_server({}, [&](http_server& srv) {
    srv.add_static_files("/static", (tree.root / "www").string(),
                         {"app.js", "lib/d3.min.js", "index.html", "missing.js"});
  });
  struct row {
    std::string path;
    int status;
    std::string body;
    std::string type;
  };
  const row rows[] = {
      {"/static/app.js", 200, "console.log('app');", "text/javascript; charset=utf-8"},
      {"/static/lib/d3.min.js", 200, "d3", "text/javascript; charset=utf-8"},
      {"/static/index.html", 200, "<html></html>", "text/html; charset=utf-8"},
      {"/static/missing.js", 404, "", ""},
      {"/static/private.txt", 404, "", ""},
      {"/static/../secret.txt", 404, "", ""},
      {"/static/lib/../app.js", 404, "", ""},
      {"/static/%2e%2e/secret.txt", 404, "", ""},
      {"/static/..%2fsecret.txt", 404, "", ""},
      {"/static//app.js", 404, "", ""},
      {"/static/./app.js", 404, "", ""},
      {"/static/app.js/", 404, "", ""},
      {"/static/APP.JS", 404, "", ""},
      {"/static/", 404, "", ""},
      {"/static/app.js%00", 404, "", ""},
      {"/secret.txt", 404, "", ""},
  };
  for (const auto& r : rows) {
    auto got = fetch(s->port(), get(r.path));
    ASSERT_TRUE(got) << r.path;
    EXPECT_EQ(got->status, r.status) << r.path;
    if (r.status == 200) {
      EXPECT_EQ(got->body, r.body) << r.path;
      EXPECT_EQ(got->header("content-type"), r.type) << r.path;
      EXPECT_EQ(got->header("x-content-type-options"), "nosniff");
    } else {
      EXPECT_EQ(got->body.find("outside"), std::string::npos) << r.path;
      EXPECT_EQ(got->body.find("not listed"), std::string::npos) << r.path;
    }
  }
  auto wrong_method = fetch(s->port(), post("/static/app.js", "x"));
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
}

TEST(RuntimeHttp, StaticFileNamesThatCouldEscapeAreRefusedWhenListed) {
  const char* bad[] = {"", "/etc/passwd", "../secret.txt", "lib/../app.js", "./app.js", "lib//d3.js",
                       "lib/", "a\\b.js", "a%2e.js", "a?.js", "a\nb.js", ".."};
  for (const char* name : bad) {
    http_server srv;
    EXPECT_THROW(srv.add_static_files("/static/", "/tmp", {name}), std::invalid_argument) << name;
  }
  http_server srv;
  EXPECT_THROW(srv.add_static_files("static", "/tmp", {"a.js"}), std::invalid_argument);
  EXPECT_NO_THROW(srv.add_static_files("/static/", "/tmp", {"a.js", "dir/b.min.js", ".hidden"}));
}

TEST(RuntimeHttp, HandlerFaultsBecome500AndAreCounted) {
  auto s = make_server({}, [](http_server& srv) {
    srv.add_route("GET", "/throws", [](const http_request&, http_responder) { throw std::runtime_error("boom"); });
    srv.add_route("GET", "/drops", [](const http_request&, http_responder) {});
    srv.add_route("GET", "/bad-header", [](const http_request&, http_responder r) {
      http_response x = text("x");
      x.headers.emplace_back("X-Evil", "a\r\nSet-Cookie: b");
      r.respond(x);
    });
    srv.add_route("GET", "/framing", [](const http_request&, http_responder r) {
      http_response x = text("x");
      x.headers.emplace_back("Content-Length", "1000");
      r.respond(x);
    });
    srv.add_route("GET", "/bad-status", [](const http_request&, http_responder r) { r.respond(text("x", 99)); });
    srv.add_route("GET", "/twice", [](const http_request&, http_responder r) {
      EXPECT_TRUE(r.respond(text("first")));
      EXPECT_FALSE(r.respond(text("second")));
      EXPECT_FALSE(r.begin_stream());
    });
    srv.add_route("GET", "/open-stream", [](const http_request&, http_responder r) {
      r.begin_stream();
      r.send_event("only");
    });  // the responder is dropped with the stream open: the server ends it
  });
  for (const char* path : {"/throws", "/drops", "/bad-header", "/framing", "/bad-status"}) {
    auto got = fetch(s->port(), get(path));
    ASSERT_TRUE(got) << path;
    EXPECT_EQ(got->status, 500) << path;
    EXPECT_EQ(got->header("set-cookie"), "") << path;
    EXPECT_EQ(nlohmann::json::parse(got->body)["error"]["type"], "server_error") << path;
  }
  auto twice = fetch(s->port(), get("/twice"));
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->body, "first");
  auto open = fetch(s->port(), get("/open-stream"));
  ASSERT_TRUE(open);
  EXPECT_EQ(open->body, "data: only\n\n");
  EXPECT_EQ(s->counters().handler_errors, 5);
}

TEST(RuntimeHttp, ManyClientsOnSeveralThreads) {
  http_server_options o;
  o.threads = 4;
  auto s = make_server(o);
  std::vector<std::future<int>> results;
  for (int t = 0; t < 16; ++t)
    results.push_back(std::async(std::launch::async, [&, t] {
      http_client c(s->port());
      int ok = 0;
      for (int i = 0; i < 20; ++i) {
        std::string body = std::to_string(t) + ":" + std::to_string(i);
        if (!c.send(post("/echo", body))) break;
        auto got = c.read_reply();
        if (got && got->body == body) ++ok;
      }
      return ok;
    }));
  for (auto& r : results) EXPECT_EQ(r.get(), 20);
  EXPECT_EQ(s->counters().requests, 16 * 20);
}

TEST(RuntimeHttp, StopClosesEverythingAndTellsHandlersWithoutHanging) {
  held_request waiting, streaming;
  auto s = make_server({}, [&](http_server& srv) {
    srv.add_route("GET", "/wait", [&](const http_request&, http_responder r) { waiting.hold(r); });
    srv.add_route("GET", "/stream", [&](const http_request&, http_responder r) {
      r.begin_stream();
      streaming.hold(r);
    });
  });
  http_client idle(s->port()), a(s->port()), b(s->port());
  ASSERT_TRUE(a.send(get("/wait")));
  ASSERT_TRUE(b.send(get("/stream")));
  ASSERT_TRUE(waiting.wait_held());
  ASSERT_TRUE(streaming.wait_held());
  http_client half(s->port());
  ASSERT_TRUE(half.send("POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly part"));

  auto stopped = std::async(std::launch::async, [&] { s->stop(); });
  ASSERT_EQ(stopped.wait_for(wait_limit), std::future_status::ready);
  EXPECT_TRUE(waiting.wait_disconnected());
  EXPECT_TRUE(streaming.wait_disconnected());
  EXPECT_TRUE(idle.closed_by_server());
  EXPECT_TRUE(half.closed_by_server());
  EXPECT_FALSE(fetch(s->port(), get("/hello")).has_value());  // nobody listens any more
  s->stop();  // again: nothing to do

  // Responders that outlive the server answer false and are safe to drop.
  s.reset();
  EXPECT_FALSE(waiting.responder->respond(text("late")));
  EXPECT_FALSE(streaming.responder->send_event("late"));
  streaming.responder->end_stream();
  waiting.responder.reset();
  streaming.responder.reset();
}

TEST(RuntimeHttp, ResponderKeptAfterTheServerIsGoneIsSafe) {
  // The handler still holds the request when the server is destroyed; it answers afterwards.
  held_request held;
  {
    auto s = make_server({}, [&](http_server& srv) {
      srv.add_route("GET", "/wait", [&](const http_request&, http_responder r) { held.hold(r); });
    });
    http_client c(s->port());
    ASSERT_TRUE(c.send(get("/wait")));
    ASSERT_TRUE(held.wait_held());
  }
  EXPECT_TRUE(held.wait_disconnected());
  EXPECT_FALSE(held.responder->respond(text("late")));
  held.responder.reset();
}

TEST(RuntimeHttp, MisuseIsRefused) {
  http_server_options bad;
  bad.threads = 0;
  EXPECT_THROW(http_server{bad}, std::invalid_argument);
  http_server s;
  auto h = [](const http_request&, http_responder r) { r.respond(text("x")); };
  s.add_route("GET", "/a", h);
  EXPECT_THROW(s.add_route("GET", "/a", h), std::logic_error);
  EXPECT_THROW(s.add_route("GET", "a", h), std::invalid_argument);
  EXPECT_THROW(s.add_route("GET", "/a?b", h), std::invalid_argument);
  EXPECT_THROW(s.add_route("G T", "/b", h), std::invalid_argument);
  s.start();
  EXPECT_THROW(s.add_route("GET", "/b", h), std::logic_error);
  EXPECT_THROW(s.start(), std::logic_error);

  // A port in use: the error names the address.
  http_server_options taken;
  taken.port = s.port();
  http_server second(taken);
  try {
    second.start();
    ADD_FAILURE() << "a second server bound the same port";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(s.port())), std::string::npos) << e.what();
  }
}

TEST(RuntimeHttp, OpenAIErrorBodyHasTheFourFields) {
  auto j = nlohmann::json::parse(openai_error_body("max_tokens must be at most 512", "invalid_request_error",
                                                   std::string("max_tokens")));
  EXPECT_EQ(j["error"]["message"], "max_tokens must be at most 512");
  EXPECT_EQ(j["error"]["type"], "invalid_request_error");
  EXPECT_EQ(j["error"]["param"], "max_tokens");
  EXPECT_TRUE(j["error"]["code"].is_null());
  EXPECT_EQ(j.size(), 1u);
  EXPECT_EQ(j["error"].size(), 4u);
  auto r = openai_error(429, "too many requests", "rate_limit_error", std::nullopt, std::string("busy"));
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(r.body)["error"]["code"], "busy");
}

TEST(RuntimeHttp, ApiKeyFileIsPrivateAndHoldsOneKey) {
  static_tree tree;
  struct row {
    const char* name;
    const char* content;  // nullptr: no file
    mode_t mode;
    const char* key;      // nullptr: refused
  };
  const row rows[] = {
      {"good", "sk-abc123\n", 0600, "sk-abc123"},
      {"padded", "  sk-abc123  \r\n\n", 0400, "sk-abc123"},
      {"missing", nullptr, 0600, nullptr},
      {"readable_by_others", "sk-abc123\n", 0644, nullptr},
      {"readable_by_group", "sk-abc123\n", 0640, nullptr},
      {"empty", "\n", 0600, nullptr},
      {"two_keys", "sk-a\nsk-b\n", 0600, nullptr},
      {"space_inside", "sk a\n", 0600, nullptr},
  };
  for (const auto& r : rows) {
    auto path = tree.root / r.name;
    if (r.content) {
      static_tree::write(path, r.content);
      ::chmod(path.c_str(), r.mode);
    }
    if (r.key) {
      EXPECT_EQ(read_api_key_file(path.string()), r.key) << r.name;
    } else {
      try {
        read_api_key_file(path.string());
        ADD_FAILURE() << r.name << " was accepted";
      } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
      }
    }
  }
}

TEST(RuntimeHttp, ContentTypesByExtension) {
  const std::pair<const char*, const char*> rows[] = {
      {"d3.min.js", "text/javascript; charset=utf-8"}, {"a.css", "text/css; charset=utf-8"},
      {"index.html", "text/html; charset=utf-8"},      {"x.json", "application/json"},
      {"d3.min.js.map", "application/json"},           {"logo.svg", "image/svg+xml"},
      {"blob", "application/octet-stream"},            {"js", "application/octet-stream"}};
  for (const auto& [name, type] : rows) EXPECT_EQ(content_type_for(name), type) << name;
}

}  // namespace
}  // namespace glam
