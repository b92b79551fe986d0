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
        }
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
