//! The page frame every HTML page shares, and HTML escaping. Pages are rendered by the
//! server; the assets (CSS, one small script) are embedded in the binary (see
//! `pages.rs`; the CSS classes pages may use are listed at the top of `assets/cairn.css`,
//! the script's helpers at the top of `assets/cairn.js`).

use axum::response::Html;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a URL query or path segment.
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who is looking at a page, for the header and for the CSRF token of its forms.
pub struct Viewer<'a> {
    pub user: &'a str,
    pub admin: bool,
    /// The session's CSRF token, put in a `<meta>` for the script and in every form.
    pub csrf: &'a str,
}

/// A whole page: `body` is already-escaped HTML.
pub fn page(title: &str, viewer: Option<&Viewer<'_>>, body: &str) -> Html<String> {
    let nav = match viewer {
        Some(v) => format!(
            r#"<nav><a href="/" class="brand">cairn</a><a href="/">Dashboard</a><a href="/history">History</a><a href="/snapshots">Snapshots</a><a href="/config">Config</a><span class="who">{user}{role}</span><form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" id="logout">Log out</button></form></nav>"#,
            user = esc(v.user),
            role = if v.admin { " (admin)" } else { "" },
            csrf = esc(v.csrf),
        ),
        None => r#"<nav><a href="/" class="brand">cairn</a></nav>"#.to_string(),
    };
    let csrf = viewer.map(|v| esc(v.csrf)).unwrap_or_default();
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="csrf" content="{csrf}"><title>{title} · cairn</title><link rel="icon" href="/assets/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/assets/cairn.css"><script src="/assets/cairn.js" defer></script></head><body>{nav}<main>{body}</main></body></html>"#,
        title = esc(title),
    ))
}

/// A readable error page (for page routes; API routes answer JSON): `status`, a title and
/// a message in plain text (escaped here), with a link to the dashboard.
pub fn error_page(
    status: axum::http::StatusCode,
    viewer: Option<&Viewer<'_>>,
    title: &str,
    message: &str,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = format!(
        r#"<h1>{title}</h1><p class="error">{message}</p><p><a href="/">Dashboard</a></p>"#,
        title = esc(title),
        message = esc(message),
    );
    (status, page(title, viewer, &body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_and_url_neutralise_markup_and_separators() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(url("A-z_0.~"), "A-z_0.~");
    }

    #[test]
    fn page_escapes_the_viewer_and_carries_the_csrf_token() {
        let v = Viewer {
            user: "<eve>",
            admin: true,
            csrf: "tok\"en",
        };
        let html = page("T<", Some(&v), "<p>body</p>").0;
        assert!(html.contains("&lt;eve&gt; (admin)"));
        assert!(!html.contains("<eve>"));
        assert!(html.contains(r#"<meta name="csrf" content="tok&quot;en">"#));
        assert!(html.contains(r#"name="csrf" value="tok&quot;en""#));
        assert!(html.contains("<title>T&lt; · cairn</title>"));
        assert!(html.contains("<main><p>body</p></main>"));
        let anon = page("x", None, "").0;
        assert!(!anon.contains("logout"));
    }

    #[test]
    fn error_page_keeps_the_status_and_escapes_the_message() {
        let r = error_page(
            axum::http::StatusCode::NOT_FOUND,
            None,
            "No <such> snapshot",
            "path <x> & y",
        );
        assert_eq!(r.status(), axum::http::StatusCode::NOT_FOUND);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let body = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .expect("body");
        let html = String::from_utf8_lossy(&body);
        assert!(html.contains("<h1>No &lt;such&gt; snapshot</h1>"), "{html}");
        assert!(html.contains("path &lt;x&gt; &amp; y"), "{html}");
        assert!(!html.contains("<x>"));
    }
}
