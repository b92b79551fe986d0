//! Trusted proxies: who may assert a user by header, and the client address behind them.

use super::*;

impl Auth {
    pub(super) fn trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|p| {
            self.trusted_proxies
                .iter()
                .any(|t| *t == p || canonical(*t) == canonical(p))
        })
    }

    /// The caller a trusted proxy named in its header.
    pub(super) fn proxy_user(&self, name: &str) -> Option<Caller> {
        let u = self.users.get(name)?;
        let csrf = lock(&self.proxy_csrf)
            .entry(name.to_string())
            .or_insert_with(random_token)
            .clone();
        Some(Caller {
            user: name.to_string(),
            role: u.role,
            csrf,
        })
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

pub(super) fn peer_of(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The client's address for rate limiting: the TCP peer, or the last address a trusted
/// proxy appended to `X-Forwarded-For`.
pub(super) fn client_ip(auth: &Auth, headers: &HeaderMap, peer: Option<IpAddr>) -> IpAddr {
    let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if auth.trusted(Some(peer)) {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|s| s.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return canonical(ip);
        }
    }
    canonical(peer)
}
