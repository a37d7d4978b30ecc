//! The benchmark's collector: a real OTLP/gRPC receiver that decodes every export request and
//! counts the spans. Prints its endpoint, then the number of spans received each time it reads a
//! line on stdin, and exits when stdin closes.

use std::io::BufRead as _;

use integration_tests::otlp_receiver::OtlpReceiver;

fn main() {
    let receiver = OtlpReceiver::start_counting();
    println!("{}", receiver.endpoint());
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        println!("{}", receiver.spans_received());
    }
}
