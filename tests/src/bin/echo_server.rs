//! The example gRPC server: `echo-server [ADDRESS] [MAX_CONCURRENT_STREAMS]` (default
//! 127.0.0.1:50051, and room for the benchmark's 10,000 open calls). Prints
//! `listening ADDRESS` once it accepts connections.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let max_streams = match args.next() {
        Some(count) => count.parse()?,
        None => integration_tests::echo::MAX_CONCURRENT_STREAMS,
    };
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening {}", listener.local_addr()?);
    integration_tests::echo::serve(listener, max_streams).await?;
    Ok(())
}
