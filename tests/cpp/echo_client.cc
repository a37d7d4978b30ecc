// The example client in C++ (grpc++), for the end-to-end tests.
//
// Runs the scenarios of echo_client.go and prints one JSON line per call with what the client
// itself measured. Messages are encoded by hand (see echo_messages.py for the fields) and sent
// as raw byte buffers, so no generated code is needed.
//
//   echo_client TARGET [--warmup N] [--wait] [--tls CA_CERT]
//
// --wait prints "ready" (after connecting and warming up, if asked) and waits for a line on
// stdin. --tls connects over TLS, trusting the certificate in CA_CERT.
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/sync_stream.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const std::string kService = "grpctrace.demo.Echo";
const char* kNotFoundMessage = "no such item: 42 \xe2\x9c\x97";

std::string varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}

struct Request {
  std::string payload;
  uint64_t fail_with_code = 0;
  std::string fail_with_message;
  uint64_t delay_ms = 0;
  uint64_t reply_bytes = 0;
  uint64_t reply_count = 0;

  grpc::ByteBuffer encode() const {
    std::string out;
    if (!payload.empty()) out += varint(1 << 3 | 2) + varint(payload.size()) + payload;
    const std::pair<uint64_t, uint64_t> fields[] = {
        {2, fail_with_code}, {4, delay_ms}, {5, reply_bytes}, {6, reply_count}};
    for (const auto& [number, value] : fields)
      if (value != 0) out += varint(number << 3) + varint(value);
    if (!fail_with_message.empty())
      out += varint(3 << 3 | 2) + varint(fail_with_message.size()) + fail_with_message;
    grpc::Slice slice(out);
    return grpc::ByteBuffer(&slice, 1);
  }
};

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::mutex output;

void report(const std::string& scenario, const std::string& method, const grpc::Status& status,
            std::chrono::steady_clock::time_point started, int requests, int responses) {
  auto duration = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  std::lock_guard<std::mutex> lock(output);
  std::cout << "{\"scenario\":" << json_string(scenario)
            << ",\"method\":" << json_string(kService + "/" + method)
            << ",\"code\":" << status.error_code()
            << ",\"message\":" << json_string(status.error_message())
            << ",\"duration_ns\":" << duration << ",\"request_messages\":" << requests
            << ",\"response_messages\":" << responses << "}" << std::endl;
}

grpc::internal::RpcMethod method_of(grpc::Channel& channel, const std::string& path,
                                    grpc::internal::RpcMethod::RpcType type) {
  // RpcMethod keeps the pointer: the paths live as long as the process.
  static std::mutex lock;
  static std::vector<std::unique_ptr<std::string>> paths;
  std::lock_guard<std::mutex> guard(lock);
  paths.push_back(std::make_unique<std::string>(path));
  return grpc::internal::RpcMethod(paths.back()->c_str(), type, channel.shared_from_this());
}

grpc::Status unary(grpc::Channel& channel, const Request& request, grpc::ClientContext& context) {
  static const auto method =
      method_of(channel, "/" + kService + "/Unary", grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::ByteBuffer reply;
  return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      &channel, method, &context, request.encode(), &reply);
}

void report_unary(grpc::Channel& channel, const std::string& scenario, const Request& request,
                  grpc::ClientContext& context) {
  auto started = std::chrono::steady_clock::now();
  grpc::Status status = unary(channel, request, context);
  report(scenario, "Unary", status, started, 1, status.ok() ? 1 : 0);
}

// A streaming method: sends `requests` messages, then reads replies to the end.
void stream(grpc::Channel& channel, const std::string& scenario, const std::string& name,
            const Request& request, int requests) {
  auto started = std::chrono::steady_clock::now();
  auto method = method_of(channel, "/" + kService + "/" + name,
                          grpc::internal::RpcMethod::BIDI_STREAMING);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> call(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          &channel, method, &context));
  for (int i = 0; i < requests; i++) call->Write(request.encode());
  call->WritesDone();
  int received = 0;
  grpc::ByteBuffer reply;
  while (call->Read(&reply)) received++;
  report(scenario, name, call->Finish(), started, requests, received);
}

void run_all(grpc::Channel& channel) {
  for (int i = 0; i < 3; i++) {
    grpc::ClientContext context;
    report_unary(channel, "unary_ok", {std::string(100, 'a'), 0, "", 0, 100}, context);
  }
  {
    grpc::ClientContext context;
    report_unary(channel, "not_found", {std::string(10, 'b'), 5, kNotFoundMessage}, context);
  }
  {
    // An error without grpc-message.
    grpc::ClientContext context;
    report_unary(channel, "internal_without_message", {std::string(10, 'i'), 13}, context);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
    report_unary(channel, "deadline_exceeded", {std::string(10, 'd'), 0, "", 1000}, context);
  }
  {
    grpc::ClientContext context;
    std::thread canceller([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      context.TryCancel();
    });
    report_unary(channel, "cancelled", {std::string(10, 'x'), 0, "", 1000}, context);
    canceller.join();
  }
  stream(channel, "server_stream", "ServerStream", {std::string(10, 'x'), 0, "", 0, 100, 5}, 1);
  stream(channel, "client_stream", "ClientStream", {std::string(50, 'y'), 0, "", 0, 100}, 4);
  stream(channel, "bidi", "Bidi", {std::string(20, 'z'), 0, "", 0, 100}, 3);
  {
    grpc::ClientContext context;
    report_unary(channel, "large", {std::string(1 << 20, 'L'), 0, "", 0, 1 << 20}, context);
  }
  std::vector<std::thread> concurrent;
  for (int i = 0; i < 20; i++)
    concurrent.emplace_back([&] {
      grpc::ClientContext context;
      report_unary(channel, "concurrent", {std::string(100, 'c'), 0, "", 20, 100}, context);
    });
  for (auto& thread : concurrent) thread.join();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: echo_client TARGET [--warmup N] [--wait] [--tls CA_CERT]" << std::endl;
    return 2;
  }
  int warmup = 0;
  bool wait = false;
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  for (int i = 2; i < argc; i++) {
    std::string arg = argv[i];
    if (arg == "--warmup" && i + 1 < argc) warmup = std::stoi(argv[++i]);
    if (arg == "--wait") wait = true;
    if (arg == "--tls" && i + 1 < argc) {
      std::ifstream file(argv[++i]);
      std::stringstream pem;
      pem << file.rdbuf();
      grpc::SslCredentialsOptions options;
      options.pem_root_certs = pem.str();
      credentials = grpc::SslCredentials(options);
    }
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(64 << 20);
  arguments.SetMaxSendMessageSize(64 << 20);
  auto channel =
      grpc::CreateCustomChannel(argv[1], credentials, arguments);
  for (int i = 0; i < warmup; i++) {
    grpc::ClientContext context;
    grpc::Status status = unary(*channel, {std::string(32, 'w'), 0, "", 0, 32}, context);
    if (!status.ok()) {
      std::cerr << "warm-up: " << status.error_message() << std::endl;
      return 1;
    }
  }
  if (wait) {
    std::cout << "ready" << std::endl;
    std::string line;
    std::getline(std::cin, line);
  }
  run_all(*channel);
  return 0;
}
