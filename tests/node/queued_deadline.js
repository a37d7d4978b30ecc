// A grpc-js client of the example server, run against one that allows a single stream at a
// time: `node queued_deadline.js ADDRESS`. grpc-js computes grpc-timeout when a call starts,
// so a call whose request waited for a stream slot resets its stream (CANCEL) sooner after
// its HEADERS than its grpc-timeout says. Prints one JSON line per scenario with the status
// code the client saw.
'use strict';
const grpc = require('@grpc/grpc-js');

const [address] = process.argv.slice(2);
const identity = (bytes) => bytes;
const Echo = grpc.makeGenericClientConstructor(
  {
    Unary: {
      path: '/grpctrace.demo.Echo/Unary',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  'Echo',
);
const client = new Echo(address, grpc.credentials.createInsecure());

// An EchoRequest with `delay_ms = 4` (varint), hand-encoded: no protobuf library needed.
function request(delayMs) {
  const bytes = [0x20];
  let value = delayMs;
  while (value > 127) {
    bytes.push((value & 127) | 128);
    value >>>= 7;
  }
  bytes.push(value);
  return Buffer.from(bytes);
}

// Starts a unary call; resolves to the status code the client saw. `onCall` gets the call.
function unary(delayMs, options = {}, onCall = () => {}) {
  return new Promise((resolve) => {
    const call = client.Unary(request(delayMs), options, (error) => resolve(error ? error.code : 0));
    onCall(call);
  });
}

function report(scenario, code) {
  console.log(JSON.stringify({ scenario, code }));
}

async function main() {
  // The connection and its SETTINGS first.
  report('warm_up', await unary(0));
  // The slot is taken for 50 ms; the next call waits for it, then outlives its 100 ms deadline.
  const first = unary(50);
  const queued = unary(1000, { deadline: Date.now() + 100 });
  report('slot_holder', await first);
  report('queued_deadline', await queued);
  // Not queued: a call cancelled by the application after 50 ms.
  const cancelled = await unary(1000, {}, (call) => setTimeout(() => call.cancel(), 50));
  report('cancelled', cancelled);
  client.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
