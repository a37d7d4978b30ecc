//! The example gRPC server: `echo-server [ADDRESS]` (default 127.0.0.1:50051). Prints
//! `listening ADDRESS` once it accepts connections.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening {}", listener.local_addr()?);
    integration_tests::echo::serve(listener).await?;
    Ok(())
}
