//! Generates the `grpctrace.demo.Echo` service (client and server) for the example server,
//! client and tests, without protoc: messages are hand-written prost structs in src/echo.rs.

use tonic_build::manual::{Builder, Method, Service};

fn main() {
    let method = |name: &str, route: &str| {
        Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::echo::EchoRequest")
            .output_type("crate::echo::EchoReply")
            .codec_path("tonic_prost::ProstCodec")
    };
    let service = Service::builder()
        .name("Echo")
        .package("grpctrace.demo")
        .method(method("unary", "Unary").build())
        .method(
            method("server_stream", "ServerStream")
                .server_streaming()
                .build(),
        )
        .method(
            method("client_stream", "ClientStream")
                .client_streaming()
                .build(),
        )
        .method(
            method("bidi", "Bidi")
                .client_streaming()
                .server_streaming()
                .build(),
        )
        .build();
    Builder::new().compile(&[service]);
}
