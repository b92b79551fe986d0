//! `[settings]`: state dir, metrics, notify, web.

use super::Validator;
use crate::config::model::*;
use crate::config::{default_state_dir, raw, Diagnostic};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn settings(&mut self, main: Option<usize>, s: raw::Settings) -> Settings {
        let state_dir = match (&s.state_dir, main) {
            (Some(d), Some(f)) => self.path(f, d.get_ref()),
            _ => default_state_dir(),
        };
        if let (Some(l), Some(f)) = (&s.metrics.as_ref().and_then(|m| m.listen.clone()), main) {
            if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
                self.error(
                    f,
                    l,
                    format!("metrics listen address {:?} is not an address", l.get_ref()),
                    Some("use IP:PORT, e.g. \"127.0.0.1:9898\"".into()),
                );
            }
        }
        let notify = match (&s.notify, main) {
            (Some(n), Some(f)) => self.notify(f, n),
            _ => Notify::default(),
        };
        Settings {
            state_dir,
            host: s.host.clone(),
            metrics_listen: s
                .metrics
                .as_ref()
                .and_then(|m| m.listen.as_ref().map(|l| l.get_ref().clone())),
            metrics_textfile: s
                .metrics
                .as_ref()
                .and_then(|m| m.textfile.as_ref().map(PathBuf::from)),
            notify,
            web: match (&s.web, main) {
                (Some(w), Some(f)) => Some(self.web(f, w)),
                _ => None,
            },
        }
    }

    fn web(&mut self, file: usize, w: &raw::Web) -> Web {
        let listen = match &w.listen {
            Some(l) => {
                if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
                    self.error(
                        file,
                        l,
                        format!("web listen address {:?} is not an address", l.get_ref()),
                        Some(format!("use IP:PORT, e.g. \"{DEFAULT_WEB_LISTEN}\"")),
                    );
                }
                l.get_ref().clone()
            }
            None => DEFAULT_WEB_LISTEN.to_string(),
        };
        let mut users = BTreeMap::new();
        for (name, u) in &w.users {
            let role = match u.get_ref().role.as_str() {
                "viewer" => Role::Viewer,
                "admin" => Role::Admin,
                other => {
                    self.error(
                        file,
                        u,
                        format!("web user {name}: role {other:?} is not a role"),
                        Some("use role = \"viewer\" (see, browse, download) or \"admin\" (also restore and trigger runs)".into()),
                    );
                    Role::Viewer
                }
            };
            users.insert(
                name.clone(),
                WebUser {
                    name: name.clone(),
                    password_hash_file: u
                        .get_ref()
                        .password_hash_file
                        .as_ref()
                        .map(|p| self.path(file, p.get_ref())),
                    role,
                },
            );
        }
        let mut trusted_proxies = Vec::new();
        for p in &w.trusted_proxies {
            match p.get_ref().parse::<std::net::IpAddr>() {
                Ok(ip) => trusted_proxies.push(ip),
                Err(_) => self.error(
                    file,
                    p,
                    format!("trusted proxy {:?} is not an IP address", p.get_ref()),
                    Some(
                        "list the proxy's address as it connects to cairn, e.g. \"127.0.0.1\""
                            .into(),
                    ),
                ),
            }
        }
        let tls = match (&w.tls_cert, &w.tls_key) {
            (Some(c), Some(k)) => Some(WebTls {
                cert: self.path(file, c),
                key: self.path(file, k),
            }),
            (None, None) => None,
            _ => {
                let d = self.texts[file].whole(
                    "settings.web: tls-cert and tls-key go together".to_string(),
                    Some("set both (PEM files) to serve HTTPS, or neither".into()),
                );
                self.problems.push(d);
                None
            }
        };
        let session_timeout = match w
            .session_timeout
            .as_deref()
            .map(crate::units::parse_duration)
        {
            None => Duration::from_secs(12 * 3600),
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                let d = self.texts[file].whole(
                    format!("settings.web.session-timeout: {e}"),
                    Some("e.g. session-timeout = \"12h\"".into()),
                );
                self.problems.push(d);
                Duration::from_secs(12 * 3600)
            }
        };
        Web {
            listen,
            users,
            tls,
            trusted_proxies,
            proxy_user_header: w
                .proxy_user_header
                .clone()
                .unwrap_or_else(|| "Remote-User".into()),
            tokens_file: w.tokens_file.as_ref().map(|p| self.path(file, p.get_ref())),
            session_timeout,
            peers: self.web_peers(file, &w.peers),
        }
    }

    /// `[[settings.web.peers]]`: unique names, http(s) base URLs without credentials, a
    /// token file (probed like `tokens-file`: unreadable is a warning), a bounded timeout.
    fn web_peers(&mut self, file: usize, peers: &[toml::Spanned<raw::WebPeer>]) -> Vec<WebPeer> {
        let mut out: Vec<WebPeer> = Vec::new();
        for p in peers {
            let p = p.get_ref();
            let name = p.name.get_ref();
            if !super::valid_name(name) {
                self.error(
                    file,
                    &p.name,
                    format!("web peer name {name:?} is not a name"),
                    Some("use letters, digits, - and _ (at most 64), e.g. name = \"nas\"".into()),
                );
            } else if out.iter().any(|o| o.name == *name) {
                self.error(
                    file,
                    &p.name,
                    format!("web peer {name} is listed twice"),
                    Some("give each [[settings.web.peers]] its own name".into()),
                );
            }
            let url = p.url.get_ref().trim_end_matches('/').to_string();
            if let Err(why) = peer_url_problem(&url) {
                // The URL is not repeated (nor shown in the printed line) when it may
                // carry a password.
                let shown = if url.contains('@') {
                    String::new()
                } else {
                    format!(" {:?}", p.url.get_ref())
                };
                self.error_secret(
                    file,
                    &p.url,
                    format!("web peer {name}: url{shown} {why}"),
                    Some("write the other daemon's web UI address, e.g. url = \"https://nas.lan:9816\"; its token goes in token-file".into()),
                );
            }
            let token_file = self.path(file, p.token_file.get_ref());
            if p.token_file.get_ref().trim().is_empty() {
                self.error(
                    file,
                    &p.token_file,
                    format!("web peer {name}: token-file is empty"),
                    Some("name a file (mode 0600) holding a viewer token of that daemon's tokens-file".into()),
                );
            } else {
                let key = format!("settings.web.peers.{name}.token-file");
                let missing = format!("write a viewer token of {name}'s tokens-file into it (mode 0600) or fix the path; until then the dashboard shows {name} as not configured");
                self.probe(
                    file,
                    &p.token_file,
                    &key,
                    "token file",
                    &token_file,
                    &missing,
                    true,
                );
            }
            let timeout = match &p.timeout {
                None => Duration::from_secs(3),
                Some(t) => match crate::units::parse_duration(t.get_ref()) {
                    Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(30) => d,
                    Ok(_) => {
                        self.error(
                            file,
                            t,
                            format!("web peer {name}: timeout {:?} is out of range", t.get_ref()),
                            Some("use 100ms to 30s, e.g. timeout = \"3s\"".into()),
                        );
                        Duration::from_secs(3)
                    }
                    Err(e) => {
                        self.error(
                            file,
                            t,
                            format!("web peer {name}: timeout: {e}"),
                            Some("e.g. timeout = \"3s\"".into()),
                        );
                        Duration::from_secs(3)
                    }
                },
            };
            out.push(WebPeer {
                name: name.clone(),
                url,
                token_file,
                timeout,
            });
        }
        out
    }

    pub(super) fn notify(&mut self, file: usize, n: &raw::Notify) -> Notify {
        let bad = |url: &Option<String>, key: &str, problems: &mut Vec<Diagnostic>| {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    let d = self.texts[file].whole(
                        format!("notify.{key} = {u:?} is not an http(s) URL"),
                        Some("write the whole URL, e.g. \"https://hc-ping.com/<uuid>\"".into()),
                    );
                    problems.push(d);
                }
            }
        };
        let mut probs = Vec::new();
        bad(&n.healthchecks, "healthchecks", &mut probs);
        bad(&n.ntfy, "ntfy", &mut probs);
        bad(&n.webhook, "webhook", &mut probs);
        self.problems.extend(probs);
        let on = n.on.as_ref().map(|evs| {
            evs.iter()
                .filter_map(|e| match e.as_str() {
                    "start" => Some(Event::Start),
                    "success" => Some(Event::Success),
                    "failure" => Some(Event::Failure),
                    other => {
                        let d = self.texts[file].whole(
                            format!("notify.on: unknown event {other:?}"),
                            Some("use \"start\", \"success\" or \"failure\"".into()),
                        );
                        self.problems.push(d);
                        None
                    }
                })
                .collect()
        });
        Notify {
            healthchecks: n.healthchecks.clone(),
            ntfy: n.ntfy.clone(),
            webhook: n.webhook.clone(),
            on,
        }
    }
}

/// Why `url` cannot be a peer's base URL: not http(s), no host, credentials, a query or
/// fragment, or characters that do not belong in a URL.
fn peer_url_problem(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("is not an http:// or https:// URL")?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') {
        return Err("carries credentials (user@ or user:password@)");
    }
    if url.contains('?') || url.contains('#') {
        return Err("has a query or fragment");
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
    {
        return Err("has spaces or characters a URL cannot hold");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn peer_urls_are_plain_http_base_urls() {
        use super::peer_url_problem as p;
        assert!(p("http://127.0.0.1:9816").is_ok());
        assert!(p("https://nas.lan:9816/cairn").is_ok());
        assert!(p("ftp://nas").is_err());
        assert!(p("nas.lan:9816").is_err());
        assert!(p("https://").is_err());
        assert!(p("https://u:pw@nas").is_err());
        assert!(p("https://nas/?token=x").is_err());
        assert!(p("https://nas /x").is_err());
    }
}
