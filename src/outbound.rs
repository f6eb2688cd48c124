//! The outbound policy: which environment variables a source may name as
//! its token, and which hosts a source may reach. The operator sets it in
//! the server's configuration (`[outbound]`), never a caller: whoever may
//! create a source could otherwise have any variable of the server's
//! environment (`AWS_SECRET_ACCESS_KEY`) sent to any host, or make the
//! server reach the cloud metadata service or a service on its loopback.
//!
//! Tokens: a variable whose name starts with `token_env_prefix`, or one
//! listed in `token_envs`. Hosts: public addresses only, unless listed in
//! `allow_hosts` (a host name, an address or a CIDR range). The address is
//! checked where it is used, so that DNS cannot rebind around the check:
//! host names through [`PolicyResolver`], the resolver of the shared HTTP
//! client, which drops every address the policy refuses; IP literals (which
//! no resolver sees) through [`OutboundPolicy::check_url`] before each
//! request. Both use one classification, [`not_public`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::OutboundConfig;

/// Why the policy refuses a token variable or a URL. Messages name the
/// setting that would allow it; they hold no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the environment variable {var} is not one sources may name: the server's outbound policy allows {allowed}"
    )]
    TokenEnv { var: String, allowed: String },
    #[error("must be an http:// or https:// URL with a host")]
    NotHttp,
    #[error(
        "must not carry a user name or password; the token comes from the environment variable token_env names"
    )]
    Userinfo,
    #[error(
        "{host} is a {class} address, which sources may not reach unless the server's outbound.allow_hosts lists it"
    )]
    Address { host: String, class: &'static str },
    #[error(
        "{host} resolves only to addresses sources may not reach ({addr} is a {class} address); list the host in the server's outbound.allow_hosts to allow it"
    )]
    Resolved {
        host: String,
        addr: IpAddr,
        class: &'static str,
    },
}

/// A setting of `[outbound]` that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "allow_hosts entry {0:?} is neither a host name, an IP address nor a CIDR range (10.0.0.0/8)"
    )]
    AllowHost(String),
    #[error(
        "token_envs entry {0:?} is not an environment variable name (A-Z, 0-9, _), or is one of the CLI's own (PLUMBLINE_TOKEN, ...)"
    )]
    TokenEnv(String),
    #[error(
        "token_env_prefix {0:?} would let sources name the server's settings and the CLI's variables (PLUMBLINE_*); use a longer prefix such as PLUMBLINE_SECRET_"
    )]
    Prefix(String),
}

/// The policy, parsed from [`OutboundConfig`].
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    token_env_prefix: String,
    token_envs: HashSet<String>,
    /// Host names allowed whatever they resolve to, in lower case, without
    /// a trailing dot.
    allow_names: HashSet<String>,
    /// Addresses and ranges allowed although not public.
    allow_nets: Vec<IpNet>,
}

impl Default for OutboundPolicy {
    /// The default configuration's policy: tokens from
    /// `PLUMBLINE_SECRET_*`, public addresses only.
    fn default() -> Self {
        OutboundPolicy::new(&OutboundConfig::default())
            .expect("the default outbound configuration parses")
    }
}

impl OutboundPolicy {
    pub fn new(config: &OutboundConfig) -> Result<OutboundPolicy, PolicyError> {
        let mut allow_names = HashSet::new();
        let mut allow_nets = Vec::new();
        for entry in &config.allow_hosts {
            let e = entry.trim();
            let bare = e.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<IpNet>() {
                allow_nets.push(net);
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                allow_nets.push(IpNet::from(ip));
            } else {
                // A name, or a form the URL parser reads as an IPv4
                // address (`0x7f.1`): what a base_url with it would reach.
                let host = (!e.is_empty() && !e.contains(['/', '@', ':', '?', '#']))
                    .then(|| Url::parse(&format!("http://{e}/")).ok())
                    .flatten()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .ok_or_else(|| PolicyError::AllowHost(entry.clone()))?;
                match host.parse::<IpAddr>() {
                    Ok(ip) => allow_nets.push(IpNet::from(ip)),
                    Err(_) => {
                        allow_names.insert(normal_name(&host));
                    }
                }
            }
        }
        if let Some(bad) = config
            .token_envs
            .iter()
            .find(|n| !crate::domain::is_valid_env_name(n) || crate::config::is_cli_variable(n))
        {
            return Err(PolicyError::TokenEnv(bad.clone()));
        }
        let prefix = &config.token_env_prefix;
        if !prefix.is_empty() && "PLUMBLINE_".starts_with(prefix.as_str()) {
            return Err(PolicyError::Prefix(prefix.clone()));
        }
        Ok(OutboundPolicy {
            token_env_prefix: config.token_env_prefix.clone(),
            token_envs: config.token_envs.iter().cloned().collect(),
            allow_names,
            allow_nets,
        })
    }

    /// Whether a source may name `var` as its token variable (no variable
    /// at all is always allowed).
    pub fn check_token_env(&self, var: &str) -> Result<(), Refused> {
        if var.is_empty() || self.allows_token_env(var) {
            return Ok(());
        }
        let allowed = match (self.token_env_prefix.is_empty(), self.token_envs.is_empty()) {
            (true, true) => {
                "no variable at all (set outbound.token_env_prefix or outbound.token_envs)"
                    .to_string()
            }
            (false, true) => format!(
                "names starting with {} (outbound.token_env_prefix)",
                self.token_env_prefix
            ),
            (true, false) => "only the names in outbound.token_envs".to_string(),
            (false, false) => format!(
                "names starting with {} (outbound.token_env_prefix) and those in outbound.token_envs",
                self.token_env_prefix
            ),
        };
        Err(Refused::TokenEnv {
            var: var.to_string(),
            allowed,
        })
    }

    fn allows_token_env(&self, var: &str) -> bool {
        let listed = self.token_envs.contains(var)
            || (!self.token_env_prefix.is_empty()
                && var.len() > self.token_env_prefix.len()
                && var.starts_with(&self.token_env_prefix));
        // The CLI's API token is never a tracker's, whatever the prefix.
        listed && !crate::config::is_cli_variable(var)
    }

    /// The values of every variable sources may name, as far as they are
    /// set, and their Base64 forms (Jira's `Basic` credential is the Base64
    /// of the variable's `email:token`): known secrets, scrubbed from
    /// whatever a sync shows. Values shorter than 8 characters are left out
    /// (no real token is that short, and replacing them would garble every
    /// message).
    pub fn known_secrets(&self) -> Vec<String> {
        use base64::Engine as _;
        let mut out = Vec::new();
        for (k, v) in std::env::vars_os() {
            let (Ok(k), Ok(v)) = (k.into_string(), v.into_string()) else {
                continue;
            };
            if v.chars().count() >= 8 && self.allows_token_env(&k) {
                out.push(base64::engine::general_purpose::STANDARD.encode(&v));
                out.push(v);
            }
        }
        out
    }

    /// Whether a request may go to `url`: http or https, no user name or
    /// password, and a host that is a name (checked when it resolves, by
    /// [`PolicyResolver`]) or an address the policy allows.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::NotHttp);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Userinfo);
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(Refused::NotHttp);
        };
        // The parser writes an address host in its one canonical form
        // (`0x7f.1` is `127.0.0.1`, IPv6 in brackets); anything else is a
        // name, checked when it resolves.
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Ok(());
        };
        self.check_addr(ip).map_err(|class| Refused::Address {
            host: host.to_string(),
            class,
        })
    }

    /// Whether the address may be reached: public, or allowed by
    /// `allow_hosts`. The error is what the address is.
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), &'static str> {
        let Some(class) = not_public(ip) else {
            return Ok(());
        };
        let canonical = canonical(ip);
        if self
            .allow_nets
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&canonical))
        {
            return Ok(());
        }
        Err(class)
    }

    /// Whether `host` (a name) is listed in `allow_hosts`, so that every
    /// address it resolves to may be reached.
    fn allows_name(&self, host: &str) -> bool {
        self.allow_names.contains(&normal_name(host))
    }

    /// The resolved addresses of `host` that may be reached; an error naming
    /// the host and the first address refused when none is left.
    pub fn filter_resolved(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, Refused> {
        if self.allows_name(host) {
            return Ok(addrs);
        }
        let mut first_refused = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check_addr(a.ip()) {
                Ok(()) => true,
                Err(class) => {
                    first_refused.get_or_insert((a.ip(), class));
                    false
                }
            })
            .collect();
        match (kept.is_empty(), first_refused) {
            (true, Some((addr, class))) => Err(Refused::Resolved {
                host: host.to_string(),
                addr,
                class,
            }),
            _ => Ok(kept),
        }
    }
}

/// A host name as compared with `allow_hosts`.
fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The IPv4 address an IPv6 address carries for IPv4 (mapped
/// `::ffff:a.b.c.d`, the NAT64 prefix `64:ff9b::/96`, 6to4 `2002::/16`),
/// so that it is judged as that IPv4 address; any other address as it is.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let o = v6.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    ip
}

/// What an address is when it is not a public unicast address (loopback,
/// private, link-local with the cloud metadata service, ...), or `None` for
/// a public one. IPv6 forms of IPv4 addresses are judged as the IPv4
/// address they carry.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(a) => not_public_v4(a),
        IpAddr::V6(a) => not_public_v6(a),
    }
}

fn not_public_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [b0, b1, b2, _] = a.octets();
    Some(match (b0, b1, b2) {
        _ if a.is_broadcast() => "broadcast",
        (0, ..) => "unspecified (this-network)",
        (127, ..) => "loopback",
        (10, ..) | (192, 168, _) => "private",
        (172, 16..=31, _) => "private",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (169, 254, _) => "link-local (cloud metadata)",
        (192, 0, 0) => "reserved (IETF protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "reserved (documentation)",
        (198, 18..=19, _) => "reserved (benchmarking)",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return None,
    })
}

fn not_public_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    Some(match s[0] {
        _ if a.is_unspecified() => "unspecified",
        _ if a.is_loopback() => "loopback",
        // ::a.b.c.d (IPv4-compatible, deprecated) and the rest of ::/96.
        0 if s[1..6] == [0; 5] => "reserved (IPv4-compatible)",
        0x100 if s[1..4] == [0; 3] => "reserved (discard)",
        0x2001 if s[1] == 0xdb8 => "reserved (documentation)",
        // Teredo tunnels to an IPv4 address it hides.
        0x2001 if s[1] == 0 => "reserved (Teredo)",
        x if x & 0xfe00 == 0xfc00 => "private (unique local)",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "private (site-local)",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// The shared HTTP client's resolver: the system's (`getaddrinfo`, through
/// tokio), with every address the policy refuses dropped. A name that
/// resolves to nothing allowed fails the connection with [`Refused`], so a
/// name cannot point the client at a private address, whenever it is
/// resolved (DNS rebinding).
#[derive(Debug, Clone)]
pub struct PolicyResolver(pub Arc<OutboundPolicy>);

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = policy.filter_resolved(&host, addrs)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The policy's refusal among the causes of `e` (a connection the resolver
/// refused), if any.
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(prefix: &str, envs: &[&str], hosts: &[&str]) -> OutboundPolicy {
        OutboundPolicy::new(&OutboundConfig {
            token_env_prefix: prefix.into(),
            token_envs: envs.iter().map(|s| s.to_string()).collect(),
            allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_public_or_say_what_they_are() {
        for (addr, want) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("100.100.100.200", "shared"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "private"),
            ("fd00:ec2::254", "private"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
            ("::127.0.0.1", "reserved"),
            ("2001:db8::1", "reserved"),
        ] {
            let got = not_public(ip(addr));
            assert!(
                got.is_some_and(|c| c.contains(want)),
                "{addr}: {got:?}, want {want}"
            );
        }
        for addr in [
            "140.82.112.6",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:140.82.112.6",
        ] {
            assert_eq!(not_public(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn urls_are_checked_on_the_address_the_parser_reads() {
        let p = OutboundPolicy::default();
        let check = |u: &str| p.check_url(&Url::parse(u).unwrap());
        assert_eq!(check("https://api.github.com/x"), Ok(()));
        assert_eq!(check("http://140.82.112.6/"), Ok(()));
        for (url, class) in [
            ("http://169.254.169.254/latest", "link-local"),
            ("http://[::1]:1", "loopback"),
            ("http://0x7f.1:22", "loopback"),
            ("http://2130706433/", "loopback"),
            ("http://[::ffff:7f00:1]/", "loopback"),
            ("http://0.0.0.0:80/", "unspecified"),
            ("http://10.0.0.1/", "private"),
        ] {
            match check(url) {
                Err(Refused::Address { class: c, .. }) => assert!(c.contains(class), "{url}: {c}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(
            check("https://me:pw@api.github.com/"),
            Err(Refused::Userinfo)
        );
        assert_eq!(
            check("https://ghp_x@api.github.com/"),
            Err(Refused::Userinfo)
        );
        assert_eq!(check("ftp://api.github.com/"), Err(Refused::NotHttp));
    }

    #[test]
    fn allow_hosts_lets_names_addresses_and_ranges_through() {
        let p = policy(
            "",
            &[],
            &["127.0.0.1", "10.0.0.0/8", "Jira.Corp.", "[fd00::1]"],
        );
        let check = |u: &str| p.check_url(&Url::parse(u).unwrap());
        assert_eq!(check("http://127.0.0.1:8080/"), Ok(()));
        assert_eq!(check("http://0x7f.1:8080/"), Ok(()));
        assert_eq!(check("http://[::ffff:127.0.0.1]/"), Ok(()));
        assert_eq!(check("http://10.9.8.7/"), Ok(()));
        assert_eq!(check("http://[fd00::1]/"), Ok(()));
        assert!(check("http://127.0.0.2/").is_err());
        assert!(check("http://192.168.0.1/").is_err());
        let a = |s: &str| SocketAddr::new(ip(s), 0);
        // A listed name may resolve anywhere; another keeps only what the
        // policy allows, and fails when nothing is left.
        assert_eq!(
            p.filter_resolved("jira.corp", vec![a("192.168.0.5")]),
            Ok(vec![a("192.168.0.5")])
        );
        assert_eq!(
            p.filter_resolved("mixed.example", vec![a("192.168.0.5"), a("140.82.112.6")]),
            Ok(vec![a("140.82.112.6")])
        );
        match p.filter_resolved("rebind.example", vec![a("169.254.169.254")]) {
            Err(Refused::Resolved { host, class, .. }) => {
                assert_eq!(host, "rebind.example");
                assert!(class.contains("link-local"));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["10.0.0.0/33", "not a host", "http://x/"] {
            let err = OutboundPolicy::new(&OutboundConfig {
                allow_hosts: vec![bad.into()],
                ..OutboundConfig::default()
            })
            .unwrap_err();
            assert_eq!(err, PolicyError::AllowHost(bad.into()));
        }
    }

    #[test]
    fn token_variables_come_from_the_prefix_or_the_list() {
        let p = policy("PLUMBLINE_SECRET_", &["GITHUB_TOKEN"], &[]);
        assert_eq!(p.check_token_env(""), Ok(()));
        assert_eq!(p.check_token_env("PLUMBLINE_SECRET_GITHUB"), Ok(()));
        assert_eq!(p.check_token_env("GITHUB_TOKEN"), Ok(()));
        for var in [
            "AWS_SECRET_ACCESS_KEY",
            "PLUMBLINE_SECRET_",
            "GITHUB_TOKEN_2",
            "PLB_OTHER_SECRET",
        ] {
            let err = p.check_token_env(var).unwrap_err().to_string();
            assert!(
                err.contains(var) && err.contains("PLUMBLINE_SECRET_"),
                "{err}"
            );
        }
        let none = policy("", &[], &[]);
        assert!(none.check_token_env("ANY").is_err());
        // The CLI's variables are never a source's token, and a prefix that
        // would reach the server's own settings is refused.
        let wide = policy("PLUMBLINE_T", &[], &[]);
        assert!(wide.check_token_env("PLUMBLINE_TRACKER").is_ok());
        assert!(wide.check_token_env("PLUMBLINE_TOKEN").is_err());
        assert!(wide.check_token_env("PLUMBLINE_TOKEN_FILE").is_err());
        for prefix in ["P", "PLUMBLINE", "PLUMBLINE_"] {
            let err = OutboundPolicy::new(&OutboundConfig {
                token_env_prefix: prefix.into(),
                ..OutboundConfig::default()
            })
            .unwrap_err();
            assert_eq!(err, PolicyError::Prefix(prefix.into()));
        }
        assert!(
            OutboundPolicy::new(&OutboundConfig {
                token_envs: vec!["PLUMBLINE_TOKEN".into()],
                ..OutboundConfig::default()
            })
            .is_err()
        );
        assert!(
            OutboundPolicy::new(&OutboundConfig {
                token_envs: vec!["lower".into()],
                ..OutboundConfig::default()
            })
            .is_err()
        );
    }
}
