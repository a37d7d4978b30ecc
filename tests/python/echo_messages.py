"""The example service's messages, encoded by hand (no generated code, no protobuf package):

  EchoRequest: 1 payload (bytes), 2 fail_with_code (int32), 3 fail_with_message (string),
               4 delay_ms (uint32), 5 reply_bytes (uint32), 6 reply_count (uint32)
  EchoReply:   1 payload (bytes), 2 sequence (uint32)
"""

SERVICE = "grpctrace.demo.Echo"
# Large enough for the 2 MiB calls.
OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def request(payload=b"", fail_with_code=0, fail_with_message="", delay_ms=0, reply_bytes=0, reply_count=0):
    out = bytearray()
    if payload:
        out += varint(1 << 3 | 2) + varint(len(payload)) + payload
    for number, value in ((2, fail_with_code), (4, delay_ms), (5, reply_bytes), (6, reply_count)):
        if value:
            out += varint(number << 3) + varint(value)
    if fail_with_message:
        encoded = fail_with_message.encode()
        out += varint(3 << 3 | 2) + varint(len(encoded)) + encoded
    return bytes(out)


def parse(data):
    """A message's fields by number: varints as ints, length-delimited ones as bytes."""
    fields, at = {}, 0
    while at < len(data):
        key, at = read_varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = read_varint(data, at)
        else:
            length, at = read_varint(data, at)
            value, at = data[at:at + length], at + length
        fields[number] = value
    return fields


def reply(reply_bytes, sequence):
    out = bytearray()
    if reply_bytes:
        out += varint(1 << 3 | 2) + varint(reply_bytes) + b"\x5a" * reply_bytes
    if sequence:
        out += varint(2 << 3) + varint(sequence)
    return bytes(out)
