//! Socket addresses of connection endpoints, from raw `sockaddr` bytes or /proc tables.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Inet(SocketAddr),
    /// A Unix socket bound to a filesystem path.
    UnixPath(String),
    /// A Unix socket in the abstract namespace (shown with a leading `@`).
    UnixAbstract(String),
    /// A Unix socket with no name (the usual client side of a Unix connection).
    UnixUnnamed,
}

impl Endpoint {
    /// Decodes a `struct sockaddr_in`, `sockaddr_in6` or `sockaddr_un` as the kernel lays them out.
    pub fn from_sockaddr(bytes: &[u8]) -> Option<Endpoint> {
        let family = u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?);
        match family {
            AF_INET => {
                let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
                let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
                Some(Endpoint::Inet(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(ip)),
                    port,
                )))
            }
            AF_INET6 => {
                let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
                let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
                Some(Endpoint::Inet(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(ip)),
                    port,
                )))
            }
            AF_UNIX => Some(Endpoint::unix(&bytes[2..])),
            _ => None,
        }
    }

    /// A Unix socket name: a NUL-terminated path, `\0`-prefixed abstract name, or nothing.
    pub fn unix(name: &[u8]) -> Endpoint {
        match name.split_first() {
            None => Endpoint::UnixUnnamed,
            Some((0, abstract_name)) => {
                Endpoint::UnixAbstract(String::from_utf8_lossy(abstract_name).into_owned())
            }
            Some(_) => {
                let end = name
                    .iter()
                    .position(|&byte| byte == 0)
                    .unwrap_or(name.len());
                if end == 0 {
                    Endpoint::UnixUnnamed
                } else {
                    Endpoint::UnixPath(String::from_utf8_lossy(&name[..end]).into_owned())
                }
            }
        }
    }

    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Inet(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Inet(addr) => write!(f, "{addr}"),
            Endpoint::UnixPath(path) => write!(f, "unix:{path}"),
            Endpoint::UnixAbstract(name) => write!(f, "unix:@{name}"),
            Endpoint::UnixUnnamed => write!(f, "unix:(unnamed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_inet_sockaddrs() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&AF_INET.to_ne_bytes());
        v4[2..4].copy_from_slice(&50051u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            Endpoint::from_sockaddr(&v4).unwrap().to_string(),
            "127.0.0.1:50051"
        );

        let mut v6 = vec![0u8; 28];
        v6[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(
            Endpoint::from_sockaddr(&v6).unwrap().to_string(),
            "[::1]:443"
        );
    }

    #[test]
    fn decodes_unix_names() {
        let mut un = AF_UNIX.to_ne_bytes().to_vec();
        un.extend_from_slice(b"/run/app.sock\0garbage");
        assert_eq!(
            Endpoint::from_sockaddr(&un),
            Some(Endpoint::UnixPath("/run/app.sock".into()))
        );
        assert_eq!(
            Endpoint::unix(b"\0grpc"),
            Endpoint::UnixAbstract("grpc".into())
        );
        assert_eq!(Endpoint::unix(b""), Endpoint::UnixUnnamed);
        assert_eq!(Endpoint::from_sockaddr(&[0, 0]), None);
    }
}
