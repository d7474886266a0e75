//! `inet` and `cidr`. Binary (`network.c`, `inet_send`): family (2 for
//! IPv4, 3 for IPv6: `PGSQL_AF_INET`, `PGSQL_AF_INET6`), bits, is_cidr,
//! address length (4 or 16), address bytes. Text: `addr[/bits]`, the
//! `/bits` always present for cidr and omitted for a host inet.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

const PGSQL_AF_INET: u8 = 2;
const PGSQL_AF_INET6: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub v6: bool,
    pub bits: u8,
    /// Only the first 4 bytes are used for IPv4.
    pub addr: [u8; 16],
}

impl Net {
    pub fn max_bits(self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn len(self) -> usize {
        if self.v6 {
            16
        } else {
            4
        }
    }

    /// The network of `self` with at most `prefix` bits, host bits zero.
    pub fn generalise(self, v4_prefix: u8, v6_prefix: u8) -> Net {
        let bits = self.bits.min(if self.v6 { v6_prefix } else { v4_prefix });
        let mut addr = self.addr;
        for (i, b) in addr.iter_mut().enumerate() {
            let keep = (u32::from(bits)).saturating_sub(i as u32 * 8).min(8);
            *b &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        }
        Net {
            v6: self.v6,
            bits,
            addr,
        }
    }

    pub fn read_binary(b: &[u8]) -> Option<Net> {
        let [family, bits, _is_cidr, nb, addr @ ..] = b else {
            return None;
        };
        let v6 = match (*family, *nb) {
            (PGSQL_AF_INET, 4) => false,
            (PGSQL_AF_INET6, 16) => true,
            _ => return None,
        };
        let net = Net {
            v6,
            bits: *bits,
            addr: [0; 16],
        };
        if addr.len() != net.len() || *bits > net.max_bits() {
            return None;
        }
        let mut full = [0; 16];
        full[..addr.len()].copy_from_slice(addr);
        Some(Net { addr: full, ..net })
    }

    pub fn write_binary(self, cidr: bool, out: &mut Vec<u8>) {
        let family = if self.v6 {
            PGSQL_AF_INET6
        } else {
            PGSQL_AF_INET
        };
        out.extend_from_slice(&[family, self.bits, u8::from(cidr), self.len() as u8]);
        out.extend_from_slice(&self.addr[..self.len()]);
    }

    pub fn read_text(t: &[u8]) -> Option<Net> {
        let t = std::str::from_utf8(t).ok()?;
        let (addr, bits) = match t.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (t, None),
        };
        let net = if let Ok(v4) = addr.parse::<Ipv4Addr>() {
            let mut full = [0; 16];
            full[..4].copy_from_slice(&v4.octets());
            Net {
                v6: false,
                bits: 32,
                addr: full,
            }
        } else {
            Net {
                v6: true,
                bits: 128,
                addr: addr.parse::<Ipv6Addr>().ok()?.octets(),
            }
        };
        let bits = bits.unwrap_or(net.bits);
        (bits <= net.max_bits()).then_some(Net { bits, ..net })
    }

    pub fn write_text(self, cidr: bool, out: &mut Vec<u8>) {
        if self.v6 {
            let _ = write!(out, "{}", Ipv6Addr::from(self.addr));
        } else {
            let a = &self.addr;
            let _ = write!(out, "{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
        }
        if cidr || self.bits != self.max_bits() {
            let _ = write!(out, "/{}", self.bits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalise_v4_and_v6() {
        let n = Net::read_text(b"192.168.17.5").unwrap();
        let g = n.generalise(24, 48);
        let mut t = Vec::new();
        g.write_text(false, &mut t);
        assert_eq!(t, b"192.168.17.0/24");
        let mut b = Vec::new();
        g.write_binary(true, &mut b);
        assert_eq!(b, [2, 24, 1, 4, 192, 168, 17, 0]);
        assert_eq!(Net::read_binary(&b), Some(g));

        let n = Net::read_text(b"2001:db8:abcd:12:1::5/64").unwrap();
        let mut t = Vec::new();
        n.generalise(24, 48).write_text(true, &mut t);
        assert_eq!(t, b"2001:db8:abcd::/48");
        // A network already wider than the prefix keeps its width.
        let n = Net::read_text(b"10.0.0.0/8").unwrap();
        assert_eq!(n.generalise(24, 48).bits, 8);
    }

    #[test]
    fn rejects() {
        assert!(Net::read_text(b"1.2.3.4/33").is_none());
        assert!(Net::read_text(b"nonsense").is_none());
        assert!(Net::read_binary(&[2, 32, 0, 4, 1, 2, 3]).is_none());
        assert!(Net::read_binary(&[3, 32, 0, 4, 1, 2, 3, 4]).is_none());
        assert!(Net::read_binary(&[2, 33, 0, 4, 1, 2, 3, 4]).is_none());
    }
}
