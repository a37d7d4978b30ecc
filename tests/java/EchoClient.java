// The example client in Java (grpc-java on Netty), for the end-to-end tests.
//
// Runs the scenarios of echo_client.go and prints one JSON line per call with what the client
// itself measured. Messages are encoded by hand (see echo_messages.py for the fields) and sent
// as raw bytes, so no generated code is needed.
//
//   java EchoClient TARGET [--warmup N] [--wait]
//
// --wait prints "ready" (after connecting and warming up, if asked) and waits for a line on
// stdin.

import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

public final class EchoClient {
  static final String SERVICE = "grpctrace.demo.Echo";
  static final String NOT_FOUND_MESSAGE = "no such item: 42 \u2717";

  /** Messages as the bytes they already are. */
  static final MethodDescriptor.Marshaller<byte[]> RAW =
      new MethodDescriptor.Marshaller<byte[]>() {
        @Override
        public InputStream stream(byte[] value) {
          return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
          try {
            return stream.readAllBytes();
          } catch (IOException e) {
            throw new RuntimeException(e);
          }
        }
      };

  static final class Request {
    byte[] payload = new byte[0];
    long failWithCode, delayMs, replyBytes, replyCount;
    String failWithMessage = "";

    Request(char fill, int size) {
      payload = new byte[size];
      Arrays.fill(payload, (byte) fill);
    }

    Request fail(long code, String message) {
      failWithCode = code;
      failWithMessage = message;
      return this;
    }

    Request delay(long ms) {
      delayMs = ms;
      return this;
    }

    Request reply(long bytes, long count) {
      replyBytes = bytes;
      replyCount = count;
      return this;
    }

    byte[] encode() {
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      if (payload.length > 0) {
        varint(out, 1 << 3 | 2);
        varint(out, payload.length);
        out.writeBytes(payload);
      }
      long[][] fields = {{2, failWithCode}, {4, delayMs}, {5, replyBytes}, {6, replyCount}};
      for (long[] field : fields) {
        if (field[1] != 0) {
          varint(out, field[0] << 3);
          varint(out, field[1]);
        }
      }
      if (!failWithMessage.isEmpty()) {
        byte[] message = failWithMessage.getBytes(StandardCharsets.UTF_8);
        varint(out, 3 << 3 | 2);
        varint(out, message.length);
        out.writeBytes(message);
      }
      return out.toByteArray();
    }

    static void varint(ByteArrayOutputStream out, long value) {
      while (value >= 0x80) {
        out.write((int) (value & 0x7f | 0x80));
        value >>>= 7;
      }
      out.write((int) value);
    }
  }

  /** What a call ended with, as the client saw it. */
  static final class Outcome {
    Status status;
    int responses;
  }

  static String json(String text) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : text.toCharArray()) {
      if (c == '"' || c == '\\') out.append('\\').append(c);
      else if (c < 0x20) out.append(String.format("\\u%04x", (int) c));
      else out.append(c);
    }
    return out.append('"').toString();
  }

  static synchronized void report(
      String scenario, String method, Outcome outcome, long started, int requests) {
    System.out.println(
        "{\"scenario\":" + json(scenario)
            + ",\"method\":" + json(SERVICE + "/" + method)
            + ",\"code\":" + outcome.status.getCode().value()
            + ",\"message\":" + json(outcome.status.getDescription() == null ? "" : outcome.status.getDescription())
            + ",\"duration_ns\":" + (System.nanoTime() - started)
            + ",\"request_messages\":" + requests
            + ",\"response_messages\":" + outcome.responses + "}");
    System.out.flush();
  }

  /** One call of `method`: sends `requests` copies of `request`, reads replies to the end. */
  static Outcome call(
      ManagedChannel channel, String method, Request request, int requests,
      CallOptions options, long cancelAfterMs) throws Exception {
    MethodDescriptor<byte[], byte[]> descriptor =
        MethodDescriptor.<byte[], byte[]>newBuilder()
            .setType(MethodDescriptor.MethodType.BIDI_STREAMING)
            .setFullMethodName(SERVICE + "/" + method)
            .setRequestMarshaller(RAW)
            .setResponseMarshaller(RAW)
            .build();
    ClientCall<byte[], byte[]> call = channel.newCall(descriptor, options);
    Outcome outcome = new Outcome();
    CompletableFuture<Outcome> done = new CompletableFuture<>();
    call.start(
        new ClientCall.Listener<byte[]>() {
          @Override
          public void onMessage(byte[] message) {
            outcome.responses++;
          }

          @Override
          public void onClose(Status status, Metadata trailers) {
            outcome.status = status;
            done.complete(outcome);
          }
        },
        new Metadata());
    call.request(Integer.MAX_VALUE);
    for (int i = 0; i < requests; i++) call.sendMessage(request.encode());
    call.halfClose();
    if (cancelAfterMs > 0) {
      Thread.sleep(cancelAfterMs);
      call.cancel("cancelled by the client", null);
    }
    return done.get();
  }

  static void run(
      ManagedChannel channel, String scenario, String method, Request request, int requests)
      throws Exception {
    long started = System.nanoTime();
    report(scenario, method, call(channel, method, request, requests, CallOptions.DEFAULT, 0),
        started, requests);
  }

  static void runAll(ManagedChannel channel) throws Exception {
    for (int i = 0; i < 3; i++) run(channel, "unary_ok", "Unary", new Request('a', 100).reply(100, 0), 1);
    run(channel, "not_found", "Unary", new Request('b', 10).fail(5, NOT_FOUND_MESSAGE), 1);
    // An error without grpc-message.
    run(channel, "internal_without_message", "Unary", new Request('i', 10).fail(13, ""), 1);
    long started = System.nanoTime();
    CallOptions deadline = CallOptions.DEFAULT.withDeadlineAfter(100, TimeUnit.MILLISECONDS);
    report("deadline_exceeded", "Unary",
        call(channel, "Unary", new Request('d', 10).delay(1000), 1, deadline, 0), started, 1);
    started = System.nanoTime();
    report("cancelled", "Unary",
        call(channel, "Unary", new Request('x', 10).delay(1000), 1, CallOptions.DEFAULT, 100),
        started, 1);
    run(channel, "server_stream", "ServerStream", new Request('x', 10).reply(100, 5), 1);
    run(channel, "client_stream", "ClientStream", new Request('y', 50).reply(100, 0), 4);
    run(channel, "bidi", "Bidi", new Request('z', 20).reply(100, 0), 3);
    run(channel, "large", "Unary", new Request('L', 1 << 20).reply(1 << 20, 0), 1);
    List<Thread> concurrent = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      Thread thread = new Thread(() -> {
        try {
          run(channel, "concurrent", "Unary", new Request('c', 100).reply(100, 0).delay(20), 1);
        } catch (Exception e) {
          throw new RuntimeException(e);
        }
      });
      thread.start();
      concurrent.add(thread);
    }
    for (Thread thread : concurrent) thread.join();
  }

  public static void main(String[] args) throws Exception {
    int warmup = 0;
    boolean wait = false;
    for (int i = 1; i < args.length; i++) {
      if (args[i].equals("--warmup")) warmup = Integer.parseInt(args[++i]);
      if (args[i].equals("--wait")) wait = true;
    }
    ManagedChannel channel =
        NettyChannelBuilder.forTarget(args[0])
            .usePlaintext()
            .maxInboundMessageSize(64 << 20)
            .build();
    for (int i = 0; i < warmup; i++) {
      Outcome outcome = call(channel, "Unary", new Request('w', 32).reply(32, 0), 1,
          CallOptions.DEFAULT, 0);
      if (!outcome.status.isOk()) {
        System.err.println("warm-up: " + outcome.status);
        System.exit(1);
      }
    }
    if (wait) {
      System.out.println("ready");
      System.out.flush();
      new BufferedReader(new InputStreamReader(System.in)).readLine();
    }
    runAll(channel);
    channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
  }
}
