// A grpc-js client of the example service over TLS: `node tls_client.js HOST:PORT CERT`, the
// certificate trusted for `localhost`. Makes every call shape in turn and prints one JSON line
// per call with what the client itself saw, as the Python client does.
'use strict';
const fs = require('fs');
const grpc = require('@grpc/grpc-js');

const [address, certificate] = process.argv.slice(2);
const identity = (bytes) => bytes;
const method = (name, requestStream, responseStream) => ({
  path: `/grpctrace.demo.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const Echo = grpc.makeGenericClientConstructor(
  {
    Unary: method('Unary', false, false),
    ServerStream: method('ServerStream', false, true),
    ClientStream: method('ClientStream', true, false),
    Bidi: method('Bidi', true, true),
  },
  'Echo',
);
const client = new Echo(
  address,
  grpc.credentials.createSsl(fs.readFileSync(certificate)),
);

function varint(value) {
  const bytes = [];
  while (value > 127) {
    bytes.push((value & 127) | 128);
    value >>>= 7;
  }
  bytes.push(value);
  return bytes;
}

// An EchoRequest, hand-encoded: 1 payload, 2 fail_with_code, 3 fail_with_message,
// 5 reply_bytes, 6 reply_count.
function request({ payload = 10, failWithCode = 0, failWithMessage = '', replyBytes = 100, replyCount = 0 }) {
  const bytes = [0x0a, ...varint(payload), ...Buffer.alloc(payload, 0x61)];
  if (failWithCode) bytes.push(0x10, ...varint(failWithCode));
  if (failWithMessage) {
    const text = Buffer.from(failWithMessage);
    bytes.push(0x1a, ...varint(text.length), ...text);
  }
  if (replyBytes) bytes.push(0x28, ...varint(replyBytes));
  if (replyCount) bytes.push(0x30, ...varint(replyCount));
  return Buffer.from(bytes);
}

function report(scenario, name, code, message, started, requests, responses) {
  console.log(JSON.stringify({
    scenario,
    method: `grpctrace.demo.Echo/${name}`,
    code,
    message,
    duration_ns: Number(process.hrtime.bigint() - started),
    request_messages: requests,
    response_messages: responses,
  }));
}

function unary(scenario, message) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    client.Unary(message, (error) => {
      report(scenario, 'Unary', error ? error.code : 0, error ? error.details : '', started, 1, error ? 0 : 1);
      resolve();
    });
  });
}

function serverStream(count) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let received = 0;
    const call = client.ServerStream(request({ replyCount: count }));
    call.on('data', () => { received += 1; });
    call.on('status', (status) => {
      report('server_stream', 'ServerStream', status.code, '', started, 1, received);
      resolve();
    });
    call.on('error', () => {});
  });
}

function clientStream(count) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const call = client.ClientStream((error) => {
      report('client_stream', 'ClientStream', error ? error.code : 0, '', started, count, 1);
      resolve();
    });
    for (let i = 0; i < count; i += 1) call.write(request({}));
    call.end();
  });
}

function bidi(count) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let received = 0;
    const call = client.Bidi();
    call.on('data', () => { received += 1; });
    call.on('status', (status) => {
      report('bidi', 'Bidi', status.code, '', started, count, received);
      resolve();
    });
    call.on('error', () => {});
    for (let i = 0; i < count; i += 1) call.write(request({}));
    call.end();
  });
}

async function main() {
  // Connected and past its handshake before the first measured call.
  await new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + 10000, (error) => (error ? reject(error) : resolve()));
  });
  for (let i = 0; i < 3; i += 1) await unary('unary_ok', request({}));
  await unary('not_found', request({ failWithCode: 5, failWithMessage: 'no such item: 42 \u2717' }));
  await serverStream(5);
  await clientStream(4);
  await bidi(3);
  await unary('large', request({ payload: 1 << 20, replyBytes: 1 << 20 }));
  client.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
