//! Which of a process's TCP connections were open when a copy of its memory was taken.
//!
//! A copy speaks for a connection only if the connection was open while it was taken: a
//! runtime frees a connection's header tables when it closes it, and a freed table is garbage
//! (glibc's free lists write over the first words of a chunk) or gone, while another
//! connection's alike table may still be there to answer in its place. The tracer reads what
//! the process did some time after it did it, so a connection it is still decoding may already
//! be closed. gRPC C-core shuts a connection's socket down (`shutdown(2)`) before it frees the
//! connection's transport, and the others close the socket first: a connection still
//! established, or only closed by its peer (CLOSE_WAIT), after the copy was open all through it.
//!
//! Read from `/proc/PID/net/tcp` and `tcp6`, the process's own network namespace's sockets.
//! Unix sockets carry no such state: their connections are never taken for open.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use foldhash::HashSet;

use crate::stream::Endpoint;

/// `TCP_ESTABLISHED` and `TCP_CLOSE_WAIT` (`include/net/tcp_states.h`): the process has not
/// shut its side of the connection down.
const OPEN_STATES: [u8; 2] = [0x01, 0x08];

/// The (local, peer) address pairs of the open TCP connections of a process.
#[derive(Debug, Default)]
pub struct OpenConnections(HashSet<(IpAddr, u16, IpAddr, u16)>);

impl OpenConnections {
    /// The connections open in `pid`'s network namespace now, if its tables can be read (a
    /// kernel without IPv6 has no `tcp6`).
    pub fn of(pid: u32) -> Option<OpenConnections> {
        let mut open = OpenConnections::default();
        let mut read = false;
        for file in ["tcp", "tcp6"] {
            if let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
                open.add_table(&table);
                read = true;
            }
        }
        read.then_some(open)
    }

    /// Whether the connection from `local` to `peer` is among them.
    pub fn holds(&self, local: Option<&Endpoint>, peer: Option<&Endpoint>) -> bool {
        let (Some(Endpoint::Inet(local)), Some(Endpoint::Inet(peer))) = (local, peer) else {
            return false;
        };
        self.0.contains(&key(local, peer))
    }

    /// Adds the open connections of a `/proc/net/tcp` or `tcp6` table.
    fn add_table(&mut self, table: &str) {
        // "sl local_address rem_address st ...", a header line first.
        for line in table.lines().skip(1) {
            let mut fields = line.split_whitespace().skip(1);
            let (Some(local), Some(peer), Some(state)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let open =
                u8::from_str_radix(state, 16).is_ok_and(|state| OPEN_STATES.contains(&state));
            if let (true, Some(local), Some(peer)) = (open, address(local), address(peer)) {
                self.0.insert(key(&local, &peer));
            }
        }
    }
}

/// Addresses compared without an IPv6 scope or flow label, which the table does not show, and
/// IPv4-mapped IPv6 addresses as the IPv4 ones they are.
fn key(local: &SocketAddr, peer: &SocketAddr) -> (IpAddr, u16, IpAddr, u16) {
    (
        local.ip().to_canonical(),
        local.port(),
        peer.ip().to_canonical(),
        peer.port(),
    )
}

/// `ADDRESS:PORT` as the table prints it: the address as the 32-bit words the kernel keeps it
/// in (network byte order), each printed as a number of this machine's byte order, then the
/// port as a number.
fn address(text: &str) -> Option<SocketAddr> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = [0u8; 16];
    if address.len() != 8 && address.len() != 32 {
        return None;
    }
    for (word, digits) in address.as_bytes().chunks(8).enumerate() {
        let digits = std::str::from_utf8(digits).ok()?;
        let value = u32::from_str_radix(digits, 16).ok()?;
        bytes[4 * word..4 * word + 4].copy_from_slice(&value.to_ne_bytes());
    }
    let ip = if address.len() == 8 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `/proc/net/tcp6` shows an established connection between two IPv4-mapped addresses
    /// on a little-endian machine, and the listening socket it was accepted by.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:C35F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:90F2 0000000000000000FFFF00000100007F:C35F 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100007F:90F4 0000000000000000FFFF00000100007F:C35F 06 00000000:00000000 03:00001234 00000000     0        0 0 3 0000000000000000
";
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 0100007F:D431 08 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
";

    fn inet(text: &str) -> Endpoint {
        Endpoint::Inet(text.parse().unwrap())
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn established_and_close_wait_connections_are_open_others_not() {
        let mut open = OpenConnections::default();
        open.add_table(TCP6);
        open.add_table(TCP);
        let (client, server) = (
            inet("[::ffff:127.0.0.1]:37106"),
            inet("[::ffff:127.0.0.1]:50015"),
        );
        assert!(open.holds(Some(&client), Some(&server)));
        // The same pair seen from the other end is another socket.
        assert!(!open.holds(Some(&server), Some(&client)));
        // TIME_WAIT: its process has closed it.
        let closed = inet("[::ffff:127.0.0.1]:37108");
        assert!(!open.holds(Some(&closed), Some(&server)));
        // CLOSE_WAIT: closed by its peer only.
        assert!(open.holds(
            Some(&inet("127.0.0.1:8080")),
            Some(&inet("127.0.0.1:54321"))
        ));
        // What the table cannot say is not taken for open.
        assert!(!open.holds(Some(&client), None));
        assert!(!open.holds(Some(&Endpoint::UnixUnnamed), Some(&server)));
    }
}
