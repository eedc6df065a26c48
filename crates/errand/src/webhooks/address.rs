//! Which addresses a webhook may be sent to, and how a receiver's name is resolved.
//!
//! A webhook URL is chosen by a customer, so Errand must not let it reach into the
//! network Errand runs in. [`is_public`] refuses every block of IANA's special-purpose
//! address registries that is not globally reachable, plus the deprecated and
//! address-embedding forms of IPv6 that could lead back to one:
//!
//! - IPv4 Special-Purpose Address Registry (RFC 6890):
//!   <https://www.iana.org/assignments/iana-ipv4-special-registry/>
//! - IPv6 Special-Purpose Address Registry (RFC 6890):
//!   <https://www.iana.org/assignments/iana-ipv6-special-registry/>
//! - multicast (IPv4 224.0.0.0/4, IPv6 ff00::/8), from the IPv4 and IPv6 address space
//!   registries: <https://www.iana.org/assignments/ipv4-address-space/>,
//!   <https://www.iana.org/assignments/ipv6-address-space/>
//!
//! The blocks refused are the tables `IPV4_BLOCKS` and `IPV6_BLOCKS` below. IPv6 forms
//! that carry an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`,
//! NAT64 `64:ff9b::/96` and 6to4 `2002::/16`) are refused when the IPv4 address they
//! carry is. A few assignments inside refused blocks are globally reachable (anycast
//! services in 192.0.0.0/24 and 2001::/23, AMT, ORCHIDv2): no webhook receiver lives
//! there, so they are refused with their block. Any IPv6 address outside 2000::/3, the
//! only block IANA allocates as global unicast, is refused too.
//!
//! A name is resolved once per attempt by a [`Resolver`]; the delivery connects to
//! exactly the addresses that were checked (see `delivery.rs`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A special-purpose block: its prefix, written as the registry writes it, and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub prefix: &'static str,
    pub name: &'static str,
}

struct Ipv4Block {
    network: u32,
    len: u32,
    block: Block,
}

struct Ipv6Block {
    network: u128,
    len: u32,
    block: Block,
}

const fn v4(network: [u8; 4], len: u32, prefix: &'static str, name: &'static str) -> Ipv4Block {
    Ipv4Block {
        network: u32::from_be_bytes(network),
        len,
        block: Block { prefix, name },
    }
}

const fn v6(network: [u16; 8], len: u32, prefix: &'static str, name: &'static str) -> Ipv6Block {
    let mut bits = 0u128;
    let mut i = 0;
    while i < 8 {
        bits = (bits << 16) | network[i] as u128;
        i += 1;
    }
    Ipv6Block {
        network: bits,
        len,
        block: Block { prefix, name },
    }
}

/// IPv4 blocks no webhook goes to.
const IPV4_BLOCKS: &[Ipv4Block] = &[
    v4([0, 0, 0, 0], 8, "0.0.0.0/8", "this network"),
    v4([10, 0, 0, 0], 8, "10.0.0.0/8", "private use"),
    v4([100, 64, 0, 0], 10, "100.64.0.0/10", "shared address space"),
    v4([127, 0, 0, 0], 8, "127.0.0.0/8", "loopback"),
    v4([169, 254, 0, 0], 16, "169.254.0.0/16", "link-local"),
    v4([172, 16, 0, 0], 12, "172.16.0.0/12", "private use"),
    v4(
        [192, 0, 0, 0],
        24,
        "192.0.0.0/24",
        "IETF protocol assignments",
    ),
    v4(
        [192, 0, 2, 0],
        24,
        "192.0.2.0/24",
        "documentation (TEST-NET-1)",
    ),
    v4([192, 88, 99, 0], 24, "192.88.99.0/24", "6to4 relay anycast"),
    v4([192, 168, 0, 0], 16, "192.168.0.0/16", "private use"),
    v4([198, 18, 0, 0], 15, "198.18.0.0/15", "benchmarking"),
    v4(
        [198, 51, 100, 0],
        24,
        "198.51.100.0/24",
        "documentation (TEST-NET-2)",
    ),
    v4(
        [203, 0, 113, 0],
        24,
        "203.0.113.0/24",
        "documentation (TEST-NET-3)",
    ),
    v4([224, 0, 0, 0], 4, "224.0.0.0/4", "multicast"),
    v4(
        [255, 255, 255, 255],
        32,
        "255.255.255.255/32",
        "limited broadcast",
    ),
    v4([240, 0, 0, 0], 4, "240.0.0.0/4", "reserved"),
];

/// IPv6 blocks no webhook goes to (the forms carrying an IPv4 address are in
/// [`special_use_v6`]).
const IPV6_BLOCKS: &[Ipv6Block] = &[
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        128,
        "::/128",
        "unspecified address",
    ),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "::1/128", "loopback"),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "64:ff9b:1::/48",
        "local-use IPv4/IPv6 translation",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "100::/64", "discard-only"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "2001::/32", "Teredo"),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "2001:db8::/32",
        "documentation",
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "2001::/23",
        "IETF protocol assignments",
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "3fff::/20",
        "documentation",
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "5f00::/16",
        "segment routing (SRv6) SIDs",
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "fc00::/7", "unique local"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "fe80::/10", "link-local"),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "fec0::/10",
        "site-local (deprecated)",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "ff00::/8", "multicast"),
];

const IPV4_MAPPED: Block = Block {
    prefix: "::ffff:0:0/96",
    name: "IPv4-mapped",
};
const IPV4_COMPATIBLE: Block = Block {
    prefix: "::/96",
    name: "IPv4-compatible (deprecated)",
};
const NAT64: Block = Block {
    prefix: "64:ff9b::/96",
    name: "IPv4/IPv6 translation",
};
const SIX_TO_FOUR: Block = Block {
    prefix: "2002::/16",
    name: "6to4",
};
const NOT_GLOBAL_UNICAST: Block = Block {
    prefix: "outside 2000::/3",
    name: "not global unicast",
};

/// Why an address is not public: its block, and for an IPv6 form that carries an IPv4
/// address, that address and its own block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialUse {
    pub block: Block,
    pub carries: Option<(Ipv4Addr, Block)>,
}

impl fmt::Display for SpecialUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.carries {
            None => write!(f, "{}: {}", self.block.prefix, self.block.name),
            Some((v4, inner)) => write!(
                f,
                "{}: {}, carrying {v4} in {}: {}",
                self.block.prefix, self.block.name, inner.prefix, inner.name
            ),
        }
    }
}

/// Whether a webhook may be sent to `ip`: it is in no block of `IPV4_BLOCKS` or
/// `IPV6_BLOCKS`, nor an IPv6 form carrying such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    special_use(ip).is_none()
}

/// The block that makes `ip` not public, if any.
pub fn special_use(ip: IpAddr) -> Option<SpecialUse> {
    match ip {
        IpAddr::V4(v4) => special_use_v4(v4).map(|block| SpecialUse {
            block,
            carries: None,
        }),
        IpAddr::V6(v6) => special_use_v6(v6),
    }
}

fn special_use_v4(ip: Ipv4Addr) -> Option<Block> {
    let bits = u32::from(ip);
    IPV4_BLOCKS
        .iter()
        .find(|b| bits >> (32 - b.len) == b.network >> (32 - b.len))
        .map(|b| b.block)
}

fn special_use_v6(ip: Ipv6Addr) -> Option<SpecialUse> {
    let bits = u128::from(ip);
    let within = |network: u128, len: u32| bits >> (128 - len) == network >> (128 - len);
    let low_v4 = Ipv4Addr::from(bits as u32);
    // The forms that carry an IPv4 address are as public as the address they carry.
    let carrier = if within(0xffff_0000_0000, 96) {
        Some((IPV4_MAPPED, low_v4))
    } else if within(0, 96) && bits > 1 {
        Some((IPV4_COMPATIBLE, low_v4))
    } else if within(0x0064_ff9b << 96, 96) {
        Some((NAT64, low_v4))
    } else if within(0x2002 << 112, 16) {
        Some((SIX_TO_FOUR, Ipv4Addr::from((bits >> 80) as u32)))
    } else {
        None
    };
    if let Some((block, v4)) = carrier {
        return special_use_v4(v4).map(|inner| SpecialUse {
            block,
            carries: Some((v4, inner)),
        });
    }
    let block = IPV6_BLOCKS
        .iter()
        .find(|b| within(b.network, b.len))
        .map(|b| b.block)
        .or_else(|| (!within(0x2000 << 112, 3)).then_some(NOT_GLOBAL_UNICAST))?;
    Some(SpecialUse {
        block,
        carries: None,
    })
}

/// Resolves a receiver's host name to the addresses a delivery may connect to.
/// Injectable so that tests can stand in for DNS.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> SpecialUse {
        let ip: IpAddr = text.parse().unwrap();
        special_use(ip).unwrap_or_else(|| panic!("{text} is refused"))
    }

    #[test]
    fn the_tables_prefixes_match_their_networks() {
        for b in IPV4_BLOCKS {
            let (network, len) = b.block.prefix.split_once('/').unwrap();
            assert_eq!(u32::from(network.parse::<Ipv4Addr>().unwrap()), b.network);
            assert_eq!(len.parse::<u32>().unwrap(), b.len, "{}", b.block.prefix);
        }
        for b in IPV6_BLOCKS {
            let (network, len) = b.block.prefix.split_once('/').unwrap();
            assert_eq!(u128::from(network.parse::<Ipv6Addr>().unwrap()), b.network);
            assert_eq!(len.parse::<u32>().unwrap(), b.len, "{}", b.block.prefix);
        }
    }

    #[test]
    fn every_special_purpose_ipv4_block_is_refused() {
        for (ip, prefix) in [
            ("0.0.0.0", "0.0.0.0/8"),
            ("0.255.255.255", "0.0.0.0/8"),
            ("10.0.0.1", "10.0.0.0/8"),
            ("10.255.255.255", "10.0.0.0/8"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("100.127.255.254", "100.64.0.0/10"),
            ("127.0.0.1", "127.0.0.0/8"),
            ("127.255.0.9", "127.0.0.0/8"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.0.0.1", "192.0.0.0/24"),
            ("192.0.0.170", "192.0.0.0/24"),
            ("192.0.2.1", "192.0.2.0/24"),
            ("192.88.99.1", "192.88.99.0/24"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("198.18.0.1", "198.18.0.0/15"),
            ("198.19.255.255", "198.18.0.0/15"),
            ("198.51.100.7", "198.51.100.0/24"),
            ("203.0.113.7", "203.0.113.0/24"),
            ("224.0.0.1", "224.0.0.0/4"),
            ("239.255.255.250", "224.0.0.0/4"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("254.1.2.3", "240.0.0.0/4"),
            ("255.255.255.255", "255.255.255.255/32"),
        ] {
            assert_eq!(refused(ip).block.prefix, prefix, "{ip}");
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn every_special_purpose_ipv6_block_is_refused() {
        for (ip, prefix) in [
            ("::", "::/128"),
            ("::1", "::1/128"),
            ("64:ff9b:1::1", "64:ff9b:1::/48"),
            ("64:ff9b:1:ffff::5db8:d822", "64:ff9b:1::/48"),
            ("100::1", "100::/64"),
            ("2001::1", "2001::/32"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32"),
            ("2001:1::1", "2001::/23"),
            ("2001:2::1", "2001::/23"),
            ("2001:10::1", "2001::/23"),
            ("2001:1ff::1", "2001::/23"),
            ("2001:db8::1", "2001:db8::/32"),
            ("3fff::1", "3fff::/20"),
            ("3fff:fff::1", "3fff::/20"),
            ("5f00::1", "5f00::/16"),
            ("fc00::1", "fc00::/7"),
            ("fd12:3456::1", "fc00::/7"),
            ("fe80::1", "fe80::/10"),
            ("febf::1", "fe80::/10"),
            ("fec0::1", "fec0::/10"),
            ("feff::1", "fec0::/10"),
            ("ff02::1", "ff00::/8"),
            ("ff0e::1", "ff00::/8"),
            // Outside 2000::/3: IPv4-translated (SIIT), and unallocated space.
            ("::ffff:0:7f00:1", "outside 2000::/3"),
            ("4000::1", "outside 2000::/3"),
        ] {
            assert_eq!(refused(ip).block.prefix, prefix, "{ip}");
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_carrying_a_special_purpose_ipv4_address_are_refused() {
        for (ip, carrier, v4, inner) in [
            (
                "::ffff:127.0.0.1",
                "::ffff:0:0/96",
                "127.0.0.1",
                "127.0.0.0/8",
            ),
            (
                "::ffff:a9fe:a9fe",
                "::ffff:0:0/96",
                "169.254.169.254",
                "169.254.0.0/16",
            ),
            ("::ffff:10.0.0.1", "::ffff:0:0/96", "10.0.0.1", "10.0.0.0/8"),
            ("::ffff:0.0.0.0", "::ffff:0:0/96", "0.0.0.0", "0.0.0.0/8"),
            ("::127.0.0.1", "::/96", "127.0.0.1", "127.0.0.0/8"),
            ("::192.168.0.1", "::/96", "192.168.0.1", "192.168.0.0/16"),
            ("::2", "::/96", "0.0.0.2", "0.0.0.0/8"),
            (
                "64:ff9b::a9fe:a9fe",
                "64:ff9b::/96",
                "169.254.169.254",
                "169.254.0.0/16",
            ),
            (
                "64:ff9b::127.0.0.1",
                "64:ff9b::/96",
                "127.0.0.1",
                "127.0.0.0/8",
            ),
            (
                "64:ff9b::198.18.0.1",
                "64:ff9b::/96",
                "198.18.0.1",
                "198.18.0.0/15",
            ),
            ("2002:7f00:1::", "2002::/16", "127.0.0.1", "127.0.0.0/8"),
            (
                "2002:a9fe:a9fe::1",
                "2002::/16",
                "169.254.169.254",
                "169.254.0.0/16",
            ),
            (
                "2002:c0a8:101:1::1",
                "2002::/16",
                "192.168.1.1",
                "192.168.0.0/16",
            ),
            ("2002:f000::", "2002::/16", "240.0.0.0", "240.0.0.0/4"),
        ] {
            let why = refused(ip);
            assert_eq!(why.block.prefix, carrier, "{ip}");
            let (carried, block) = why.carries.unwrap_or_else(|| panic!("{ip} carries"));
            assert_eq!(carried, v4.parse::<Ipv4Addr>().unwrap(), "{ip}");
            assert_eq!(block.prefix, inner, "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_accepted() {
        for ip in [
            "93.184.216.34",
            "93.184.215.14",
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.88.98.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "2001:200::1",
            // 6to4, NAT64, IPv4-mapped and -compatible forms of a public IPv4 address.
            "2002:5db8:d822::1",
            "64:ff9b::5db8:d822",
            "::ffff:93.184.216.34",
            "::93.184.216.34",
        ] {
            assert!(
                is_public(ip.parse().unwrap()),
                "{ip}: {:?}",
                special_use(ip.parse().unwrap())
            );
        }
    }

    #[test]
    fn a_refusal_says_which_block_it_is_in() {
        assert_eq!(refused("127.0.0.1").to_string(), "127.0.0.0/8: loopback");
        assert_eq!(
            refused("64:ff9b::a9fe:a9fe").to_string(),
            "64:ff9b::/96: IPv4/IPv6 translation, carrying 169.254.169.254 in 169.254.0.0/16: link-local"
        );
    }
}
