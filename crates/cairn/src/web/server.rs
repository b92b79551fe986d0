//! The listener: plain HTTP or TLS (rustls), with the limits of a port reachable from
//! the network.
//!
//! - A client must send each request head within [`HEADER_READ_TIMEOUT`] (this also
//!   closes keep-alive connections left idle between requests), at most
//!   [`MAX_HEAD_BYTES`]; at most [`MAX_CONNECTIONS`] connections are served at once (more
//!   are closed at once rather than queued behind stalled ones).
//! - No total time limit per connection (a 1 GiB download or a Server-Sent Events stream
//!   lasts long): a connection on which no byte moves either way for [`IDLE_TIMEOUT`] is
//!   closed. A handler that computes longer before answering, or a stream that may stay
//!   quiet longer (SSE: send a comment line now and then), must send something sooner
//!   ([`idle_timeout`] says how soon). Hidden setting, for tests: the environment variable
//!   `CAIRN_WEB_IDLE_TIMEOUT_MS` (milliseconds, at least 50) replaces [`IDLE_TIMEOUT`].
//! - Every response carries the security headers of [`security_headers`] (and
//!   `Cache-Control: no-store` unless the handler sets its own); every request
//!   carries the TCP peer as `ConnectInfo<SocketAddr>` (the access check needs it for
//!   trusted proxies and rate limiting).
//! - A state-changing request a browser sends for another site is refused before any
//!   route, the login included ([`refuse_cross_site`]: login CSRF); a handler that panics
//!   answers 500 and the connection lives on ([`catch_panic`]).
//!
//! Nothing here blocks the runtime's workers: TLS files are read before it starts.

use crate::config::{Web, WebTls};
use anyhow::{Context, Result};
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client must send its whole request head (and a TLS handshake) within this time.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection on which nothing moves for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The idle time of this server: [`IDLE_TIMEOUT`], or `CAIRN_WEB_IDLE_TIMEOUT_MS` when
/// set (hidden: lets a test outlast it with a restore of a few MB instead of a few GB).
pub fn idle_timeout() -> Duration {
    std::env::var("CAIRN_WEB_IDLE_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.max(50)))
        .unwrap_or(IDLE_TIMEOUT)
}

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head read; larger ones get 431.
pub const MAX_HEAD_BYTES: usize = 16 << 10;

/// The Content-Security-Policy of every response: this server only, inline scripts and
/// styles allowed (pages carry small ones), no framing, forms post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn start(
    web: &Web,
    app: axum::Router,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let tls = web.tls.as_ref().map(tls_acceptor).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("cairn-web")
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the web server's runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&web.listen))
        .with_context(|| format!("cannot listen on {} for the web UI", web.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("web UI on {scheme}://{}/", web.listen);
    let local = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    if tls.is_none() && !local {
        eprintln!(
            "web: warning: {} is reachable from the network without TLS: passwords and session cookies cross it in clear; set tls-cert and tls-key, or serve through a TLS proxy",
            web.listen
        );
    }
    if web.users.is_empty() && web.tokens_file.is_none() {
        eprintln!(
            "web: warning: no users in [settings.web.users] and no tokens-file: nobody can log in"
        );
    }
    let app = layers(app);
    Ok(std::thread::spawn(move || {
        runtime.block_on(accept_loop(listener, app, tls, stop));
        // Connections still open are dropped with the runtime.
        runtime.shutdown_timeout(Duration::from_secs(1));
    }))
}

/// `app` with the layers every request passes: panics caught, cross-site requests
/// refused, security headers added.
pub fn layers(app: axum::Router) -> axum::Router {
    app.layer(axum::middleware::from_fn(body_deadline))
        .layer(axum::middleware::from_fn(refuse_cross_site))
        .layer(axum::middleware::from_fn(catch_panic))
        .layer(axum::middleware::map_response(security_headers))
}

/// A request's body must arrive within this time (bodies here are small forms and
/// JSON); a client trickling one byte now and then (which keeps the idle timer alive)
/// gets an error instead of holding a connection slot for ever.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Ends the request body with an error at [`BODY_READ_TIMEOUT`] after the head: the
/// handler's extractor fails (4xx) and the connection, its body unread, is closed.
pub async fn body_deadline(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::StreamExt;
    let (parts, body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    let chunks = futures_util::stream::unfold(Some(body.into_data_stream()), move |s| async move {
        let mut s = s?;
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(s))),
            Ok(None) => None,
            Err(_) => {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                );
                Some((Err(axum::Error::new(late)), None))
            }
        }
    });
    let body = axum::body::Body::from_stream(chunks);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// Adds the security headers to every response (a handler's own values win).
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::REFERRER_POLICY, "same-origin"),
        // Pages carry CSRF tokens and API answers private data: kept in no cache unless
        // the handler says otherwise (assets revalidate by ETag).
        (header::CACHE_CONTROL, "no-store"),
    ] {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// Answers 500 when the handler panics (instead of dropping the connection without an
/// answer); the panic itself is printed by the panic hook.
pub async fn catch_panic(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::response::IntoResponse;
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            eprintln!("web: a request's handler panicked; answered 500");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({
                    "error": "internal error",
                    "hint": "see the server's log",
                })),
            )
                .into_response()
        }
    }
}

/// Whether a state-changing request comes from this server's own pages (or from a
/// client that is not a browser): `Sec-Fetch-Site` is `same-origin` or `none`, or, from
/// browsers that do not send it, `Origin` is absent or names the `Host` (or the
/// `X-Forwarded-Host` a proxy set: a browser cannot set it on a cross-site request).
fn same_origin(h: &axum::http::HeaderMap) -> bool {
    if let Some(site) = h.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return true;
    };
    let Some((_, authority)) = origin.to_str().ok().and_then(|o| o.split_once("://")) else {
        return false; // `null` (sandboxed frames, privacy redirects) or garbage
    };
    [
        header::HOST,
        header::HeaderName::from_static("x-forwarded-host"),
    ]
    .iter()
    .filter_map(|n| h.get(n)?.to_str().ok())
    .any(|host| host.eq_ignore_ascii_case(authority))
}

/// Refuses (403) a state-changing request another site's page made the browser send:
/// with the SameSite=Strict cookie this closes login CSRF (a form elsewhere logging the
/// victim in as the attacker) and stands in front of the CSRF token everywhere else.
pub async fn refuse_cross_site(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || same_origin(request.headers()) {
        return next.run(request).await;
    }
    let (error, hint) = (
        "cross-site request refused",
        "state-changing requests are accepted only from cairn's own pages",
    );
    if request.uri().path().starts_with("/api/") {
        (
            axum::http::StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({"error": error, "hint": hint})),
        )
            .into_response()
    } else {
        super::layout::error_page(axum::http::StatusCode::FORBIDDEN, None, error, hint)
    }
}

/// The TLS acceptor of `tls`: a PEM certificate chain and its PEM private key. Errors
/// name the file at fault.
fn tls_acceptor(tls: &WebTls) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let cert_err = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "tls-cert {}: cannot read a PEM certificate chain: {e}",
            tls.cert.display()
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| cert_err(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(&e))?;
    if certs.is_empty() {
        anyhow::bail!(
            "tls-cert {}: no certificate in the file (expected PEM `-----BEGIN CERTIFICATE-----`)",
            tls.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        anyhow::anyhow!(
            "tls-key {}: cannot read a PEM private key: {e}",
            tls.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "tls-key {} does not fit tls-cert {}",
                tls.key.display(),
                tls.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: Arc<AtomicBool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    while !stop.load(Ordering::Relaxed) {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    eprintln!("web: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let tls = tls.clone();
        tokio::spawn(async move {
            let epoch = Instant::now();
            let last = Arc::new(AtomicU64::new(0));
            match tls {
                None => {
                    let io = Watched::new(stream, epoch, last.clone());
                    serve(io, app, epoch, last, idle_timeout()).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await;
                    if let Ok(Ok(stream)) = handshake {
                        let io = Watched::new(stream, epoch, last.clone());
                        serve(io, app, epoch, last, idle_timeout()).await
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Serves one connection until it ends or nothing moves on it for `idle_timeout`
/// ([`IDLE_TIMEOUT`]).
async fn serve<I>(
    io: Watched<I>,
    app: axum::Router,
    epoch: Instant,
    last: Arc<AtomicU64>,
    idle_timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(connection);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let idle = epoch.elapsed().saturating_sub(since);
        if idle >= idle_timeout {
            return;
        }
        tokio::select! {
            _ = &mut connection => return,
            _ = tokio::time::sleep(idle_timeout - idle) => {}
        }
    }
}

/// A connection's stream that notes when bytes last moved (milliseconds since `epoch`).
struct Watched<I> {
    inner: I,
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl<I> Watched<I> {
    fn new(inner: I, epoch: Instant, last: Arc<AtomicU64>) -> Watched<I> {
        Watched { inner, epoch, last }
    }

    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_origin_trusts_fetch_metadata_then_origin_against_host() {
        assert!(same_origin(&headers(&[])), "not a browser");
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "none")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "https://Cairn.lan:8443"),
            ("host", "cairn.lan:8443"),
        ])));
        assert!(same_origin(&headers(&[
            ("origin", "https://backup.example"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "backup.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "cairn.lan"),
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "null"),
            ("host", "cairn.lan")
        ])));
        assert!(!same_origin(&headers(&[("origin", "https://cairn.lan")])));
    }

    /// A handler that panics answers 500 and the server (and the connection's neighbours)
    /// go on serving.
    #[test]
    fn a_panicking_handler_answers_500_and_the_server_serves_on() {
        let app = layers(
            axum::Router::new()
                .route(
                    "/boom",
                    axum::routing::get(|| async {
                        if std::hint::black_box(true) {
                            panic!("handler bug");
                        }
                        "unreachable"
                    }),
                )
                .route("/ok", axum::routing::get(|| async { "ok" })),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        runtime.spawn(accept_loop(listener, app, None, stop.clone()));
        let get = |path: &str| match ureq::get(&format!("http://127.0.0.1:{port}{path}")).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{path}: {e}"),
        };
        assert_eq!(get("/boom"), 500);
        assert_eq!(get("/ok"), 200);
        assert_eq!(get("/boom"), 500);
        stop.store(true, Ordering::Relaxed);
    }
    /// A client that stops reading a long answer is cut after the idle time; one that
    /// reads slowly but steadily keeps its connection well past it (no total limit).
    #[test]
    fn a_stalled_reader_is_cut_after_the_idle_time_and_a_slow_one_is_not() {
        use std::io::{Read, Write};
        let app = axum::Router::new().route(
            "/endless",
            axum::routing::get(|| async {
                let chunk = bytes::Bytes::from(vec![b'x'; 64 << 10]);
                let chunks = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::convert::Infallible>(chunk.clone())
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Small socket buffers (accepted sockets inherit the listener's), so what the
        // client reads shows soon as progress of the server's writes.
        let listener = runtime
            .block_on(async {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_send_buffer_size(32 << 10)?;
                socket.bind("127.0.0.1:0".parse().expect("address"))?;
                socket.listen(8)
            })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = || {
            let c = runtime
                .block_on(async {
                    let socket = tokio::net::TcpSocket::new_v4()?;
                    socket.set_recv_buffer_size(32 << 10)?;
                    socket.connect(addr).await?.into_std()
                })
                .unwrap();
            c.set_nonblocking(false).unwrap();
            c
        };
        let idle = Duration::from_millis(700);
        let listener = Arc::new(listener);
        let serve_one = |app: axum::Router| {
            let listener = listener.clone();
            runtime.spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let epoch = Instant::now();
                let last = Arc::new(AtomicU64::new(0));
                let io = Watched::new(stream, epoch, last.clone());
                serve(io, app, epoch, last, idle).await;
                epoch.elapsed()
            })
        };
        let request = b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut buf = vec![0u8; 64 << 10];

        // Stalled: reads a little, then nothing.
        let served = serve_one(app.clone());
        let mut c = connect();
        c.write_all(request).unwrap();
        c.read_exact(&mut buf[..1024]).unwrap();
        let lasted = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), served).await })
            .expect("a stalled reader was kept for 10 s")
            .unwrap();
        assert!(lasted < Duration::from_secs(5), "cut after {lasted:?}");

        // Slow but steady: 64 KiB every 100 ms for 3 s, four times the idle time.
        let served = serve_one(app);
        let mut c = connect();
        c.write_all(request).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            c.read_exact(&mut buf).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!served.is_finished(), "a steadily read answer was cut");
        drop(c);
        let lasted = runtime.block_on(served).unwrap();
        assert!(lasted >= Duration::from_secs(3));
    }
}
