//! The client's address: the TCP peer, or, when the peer is a trusted reverse proxy, the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries left of it were
//! written by the client and prove nothing).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;

pub fn client_address(parts: &Parts, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(forwarded.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer))
}

/// The client's address as an extractor (`None` when the server runs without peer info, as in
/// router tests).
pub struct ClientAddr(pub Option<IpAddr>);

impl axum::extract::FromRequestParts<crate::state::AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &crate::state::AppState) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_address(parts, &state.config.auth.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(peer: &str, xff: &[&str]) -> Parts {
        let mut req = Request::builder();
        for v in xff {
            req = req.header("x-forwarded-for", *v);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client_address(&parts("203.0.113.9:1234", &["1.2.3.4"]), &trusted), ip("203.0.113.9"));
        assert_eq!(client_address(&parts("10.0.0.2:1234", &["1.2.3.4"]), &trusted), ip("1.2.3.4"));
        // A client-supplied entry left of the real one is ignored; chained proxies are skipped.
        assert_eq!(client_address(&parts("10.0.0.2:1", &["6.6.6.6, 1.2.3.4, 10.0.0.7"]), &trusted), ip("1.2.3.4"));
        assert_eq!(client_address(&parts("10.0.0.2:1", &["6.6.6.6", "1.2.3.4"]), &trusted), ip("1.2.3.4"));
        assert_eq!(client_address(&parts("10.0.0.2:1", &["garbage"]), &trusted), ip("10.0.0.2"));
        assert_eq!(client_address(&parts("10.0.0.2:1", &["1.2.3.4"]), &[]), ip("10.0.0.2"));
    }
}
