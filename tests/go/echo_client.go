// The example client in Go (grpc-go), for the end-to-end tests.
//
// Runs the same scenarios as echo_client.py and prints one JSON line per call with what the
// client itself measured. Messages are encoded by hand (see echo_messages.py for the fields),
// through a codec that passes bytes through, so no generated code is needed.
//
//	echo_client TARGET [--warmup N] [--wait] [--second-channel]
//
// --wait prints "ready" (after connecting and warming up, if asked) and waits for a line on
// stdin. --second-channel also opens a second connection, warmed with ClientStream calls, and
// makes a few of its calls on it after the wait: two connections whose header tables hold
// different methods.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const service = "grpctrace.demo.Echo"
const notFoundMessage = "no such item: 42 \u2717"
const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// rawCodec sends and receives messages as the bytes they already are.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func varint(value uint64) []byte {
	var out []byte
	for value >= 0x80 {
		out = append(out, byte(value)|0x80)
		value >>= 7
	}
	return append(out, byte(value))
}

type request struct {
	payload         []byte
	failWithCode    uint64
	failWithMessage string
	delayMs         uint64
	replyBytes      uint64
	replyCount      uint64
}

func (r request) encode() []byte {
	var out []byte
	if len(r.payload) > 0 {
		out = append(out, varint(1<<3|2)...)
		out = append(out, varint(uint64(len(r.payload)))...)
		out = append(out, r.payload...)
	}
	for _, field := range []struct {
		number uint64
		value  uint64
	}{{2, r.failWithCode}, {4, r.delayMs}, {5, r.replyBytes}, {6, r.replyCount}} {
		if field.value != 0 {
			out = append(out, varint(field.number<<3)...)
			out = append(out, varint(field.value)...)
		}
	}
	if r.failWithMessage != "" {
		out = append(out, varint(3<<3|2)...)
		out = append(out, varint(uint64(len(r.failWithMessage)))...)
		out = append(out, r.failWithMessage...)
	}
	return out
}

func repeat(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

var output = struct {
	sync.Mutex
	*json.Encoder
}{Encoder: json.NewEncoder(os.Stdout)}

func report(scenario, method string, err error, started time.Time, requests, responses int) {
	code, message := uint32(0), ""
	if err != nil {
		s := status.Convert(err)
		code, message = uint32(s.Code()), s.Message()
	}
	output.Lock()
	defer output.Unlock()
	output.Encode(map[string]interface{}{
		"scenario": scenario, "method": service + "/" + method, "code": code, "message": message,
		"duration_ns": time.Since(started).Nanoseconds(), "request_messages": requests,
		"response_messages": responses,
	})
}

func unary(ctx context.Context, conn *grpc.ClientConn, message request) error {
	in, out := message.encode(), []byte(nil)
	return conn.Invoke(ctx, "/"+service+"/Unary", &in, &out)
}

func reportUnary(conn *grpc.ClientConn, scenario string, message request, ctx context.Context) {
	started := time.Now()
	err := unary(ctx, conn, message)
	replies := 1
	if err != nil {
		replies = 0
	}
	report(scenario, "Unary", err, started, 1, replies)
}

// stream runs a streaming method: sends `requests`, then reads replies to the end.
func stream(conn *grpc.ClientConn, method string, clientStreams, serverStreams bool, message request, requests int) {
	started := time.Now()
	desc := &grpc.StreamDesc{ClientStreams: clientStreams, ServerStreams: serverStreams}
	s, err := conn.NewStream(context.Background(), desc, "/"+service+"/"+method)
	received := 0
	if err == nil {
		for i := 0; i < requests && err == nil; i++ {
			in := message.encode()
			err = s.SendMsg(&in)
		}
		if err == nil {
			err = s.CloseSend()
		}
		for err == nil {
			var out []byte
			if err = s.RecvMsg(&out); err == nil {
				received++
			}
		}
		if err == io.EOF {
			err = nil
		}
	}
	report(scenario(method), method, err, started, requests, received)
}

func scenario(method string) string {
	return map[string]string{"ServerStream": "server_stream", "ClientStream": "client_stream", "Bidi": "bidi"}[method]
}

func runAll(conn *grpc.ClientConn, second *grpc.ClientConn) {
	for i := 0; i < 3; i++ {
		ctx := context.Background()
		if i == 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", traceparent)
		}
		reportUnary(conn, "unary_ok", request{payload: repeat('a', 100), replyBytes: 100}, ctx)
	}
	reportUnary(conn, "not_found", request{payload: repeat('b', 10), failWithCode: 5, failWithMessage: notFoundMessage}, context.Background())
	// An error without grpc-message.
	reportUnary(conn, "internal_without_message", request{payload: repeat('i', 10), failWithCode: 13}, context.Background())
	deadline, cancelDeadline := context.WithTimeout(context.Background(), 100*time.Millisecond)
	reportUnary(conn, "deadline_exceeded", request{payload: repeat('d', 10), delayMs: 1000}, deadline)
	cancelDeadline()
	cancelled, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	reportUnary(conn, "cancelled", request{payload: repeat('x', 10), delayMs: 1000}, cancelled)
	stream(conn, "ServerStream", false, true, request{payload: repeat('x', 10), replyBytes: 100, replyCount: 5}, 1)
	stream(conn, "ClientStream", true, false, request{payload: repeat('y', 50), replyBytes: 100}, 4)
	stream(conn, "Bidi", true, true, request{payload: repeat('z', 20), replyBytes: 100}, 3)
	if second != nil {
		for i := 0; i < 3; i++ {
			stream(second, "ClientStream", true, false, request{payload: repeat('s', 30), replyBytes: 10}, 2)
		}
	}
	reportUnary(conn, "large", request{payload: repeat('L', 1<<20), replyBytes: 1 << 20}, context.Background())
	var wait sync.WaitGroup
	for i := 0; i < 20; i++ {
		wait.Add(1)
		go func() {
			defer wait.Done()
			reportUnary(conn, "concurrent", request{payload: repeat('c', 100), replyBytes: 100, delayMs: 20}, context.Background())
		}()
	}
	wait.Wait()
}

func dial(target string) *grpc.ClientConn {
	conn, err := grpc.Dial(target, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	return conn
}

func main() {
	target, warmup, wait, secondChannel := os.Args[1], 0, false, false
	for i := 2; i < len(os.Args); i++ {
		switch os.Args[i] {
		case "--warmup":
			i++
			fmt.Sscan(os.Args[i], &warmup)
		case "--wait":
			wait = true
		case "--second-channel":
			secondChannel = true
		}
	}
	conn := dial(target)
	for i := 0; i < warmup; i++ {
		if err := unary(context.Background(), conn, request{payload: repeat('w', 32), replyBytes: 32}); err != nil {
			fmt.Fprintln(os.Stderr, "warm-up:", err)
			os.Exit(1)
		}
	}
	var second *grpc.ClientConn
	if secondChannel {
		second = dial(target)
		for i := 0; i < warmup; i++ {
			desc := &grpc.StreamDesc{ClientStreams: true}
			s, err := second.NewStream(context.Background(), desc, "/"+service+"/ClientStream")
			if err == nil {
				in := request{payload: repeat('v', 8)}.encode()
				s.SendMsg(&in)
				s.CloseSend()
				var out []byte
				err = s.RecvMsg(&out)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "warm-up:", err)
				os.Exit(1)
			}
		}
	}
	if wait {
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	runAll(conn, second)
	conn.Close()
	if second != nil {
		second.Close()
	}
}
