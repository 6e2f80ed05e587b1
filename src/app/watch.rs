//! The lease watch: how a standby hears at once that the leader gave its lease up (SIGTERM) or
//! that its process is gone (the kernel refuses and resets its connections), without reading
//! the lease over and over.
//!
//! The leader serves `GET /v1/lease/watch?epoch=N` on its HTTP port (`http.rs`): the answer
//! comes when it no longer leads at epoch N — `released` once it gave the lease up, `not_holder`
//! otherwise — or `held` after `WATCH_HOLD`, and the standby asks again. The lease item names
//! the holder's address (`holder_addr`, from `--advertise-addr`); a standby holds one such
//! request open to the holder it last read.
//!
//! Nothing heard here decides a takeover. An answer other than `held`, a refused connection or
//! one closed before the answer only makes the standby read the lease now; what it reads is
//! judged by the usual rules (a released lease is taken at once, a held one only after its
//! version stood still for a whole lease). A hostile or broken answer therefore costs at most a
//! lease read, and the watcher backs off (1 s doubling to a minute) before asking the same
//! holder again after anything but a full-length `held`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::election::WatchTarget;
use crate::telemetry::Metrics;

/// The path of the lease watch on the HTTP port.
pub const WATCH_PATH: &str = "/v1/lease/watch";
/// How long the leader holds a watch open before answering `held`.
pub const WATCH_HOLD: Duration = Duration::from_secs(55);
/// The longest a standby waits for an answer (the hold, and room for a slow network).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(65);
/// How long a standby waits for the leader to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer a standby reads (a real one is about 40 bytes).
pub const MAX_ANSWER_BYTES: usize = 1024;
/// The most watches one replica serves at once (a region has a few standbys).
pub const MAX_WATCHERS: usize = 32;
/// Pauses between two watches of the same holder after anything but a full-length `held`.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A `held` answer after at least this long is a real long poll: ask again at once.
const LONG_WATCH: Duration = Duration::from_secs(10);

/// The leader's state as the watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// It still leads at the epoch asked about.
    Held,
    /// It gave the lease of that epoch up.
    Released,
    /// It does not lead at that epoch (it lost the lease, or never had it).
    NotHolder,
}

/// The answer's body: the epoch asked about and the state. Nothing else is disclosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchAnswer {
    pub epoch: u64,
    pub state: WatchState,
}

/// What one watch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The holder still leads (the long poll ran its course).
    Held,
    /// The holder says it released the lease.
    Released,
    /// The holder says it does not lead at that epoch.
    NotHolder,
    /// The holder's process is gone: the connection was refused, or closed or reset before
    /// an answer.
    Gone(String),
    /// No usable answer (a timeout, an unreachable network, an answer that is not one): says
    /// nothing about the holder.
    Unreachable(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Held => "held",
            Outcome::Released => "released",
            Outcome::NotHolder => "not_holder",
            Outcome::Gone(_) => "gone",
            Outcome::Unreachable(_) => "unreachable",
        }
    }

    /// Whether the standby should read the lease now.
    pub fn reads_lease(&self) -> bool {
        matches!(
            self,
            Outcome::Released | Outcome::NotHolder | Outcome::Gone(_)
        )
    }
}

/// What the watcher tells the lease loop: read the lease now, because of `outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub target: WatchTarget,
    pub outcome: Outcome,
}

/// Aborts the connection's task when the watch ends, however it ends (a timeout drops it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

fn io_means_gone(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused | ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// A connection that ended before an answer means the holder's process (or at least its
/// server) is gone; anything else (a malformed answer) says nothing.
fn classify(e: &hyper::Error) -> Outcome {
    let gone = e.is_incomplete_message()
        || e.is_canceled()
        || e.is_closed()
        || io_kind(e).is_some_and(io_means_gone);
    if gone {
        Outcome::Gone(format!("the connection ended before an answer: {e}"))
    } else {
        Outcome::Unreachable(format!("no answer: {e}"))
    }
}

/// Watch `target` once: connect, ask, wait for the answer (bounded in time and size).
pub async fn watch_once(target: &WatchTarget) -> Outcome {
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target.addr))
            .await
        {
            Err(_) => {
                return Outcome::Unreachable(format!("no connection within {CONNECT_TIMEOUT:?}"));
            }
            Ok(Err(e)) if io_means_gone(e.kind()) => {
                return Outcome::Gone(format!("connecting: {e}"));
            }
            Ok(Err(e)) => return Outcome::Unreachable(format!("connecting: {e}")),
            Ok(Ok(s)) => s,
        };
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(ANSWER_DEADLINE, exchange(stream, target)).await {
        Ok(o) => o,
        Err(_) => Outcome::Unreachable(format!("no answer within {ANSWER_DEADLINE:?}")),
    }
}

async fn exchange(stream: tokio::net::TcpStream, target: &WatchTarget) -> Outcome {
    let (mut sender, conn) = match hyper::client::conn::http1::Builder::new()
        // The smallest buffer hyper allows: an answer's head is a few hundred bytes.
        .max_buf_size(8192)
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(stream))
        .await
    {
        Ok(x) => x,
        Err(e) => return classify(&e),
    };
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let request = match hyper::Request::get(format!("{WATCH_PATH}?epoch={}", target.epoch))
        .header(hyper::header::HOST, target.addr.to_string())
        .header(hyper::header::USER_AGENT, "mrgc-autoscaler-standby")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return Outcome::Unreachable(format!("building the request: {e}")),
    };
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => return classify(&e),
    };
    if response.status() != hyper::StatusCode::OK {
        return Outcome::Unreachable(format!("HTTP {}", response.status()));
    }
    let body = match Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return match e.downcast_ref::<hyper::Error>() {
                Some(h) => classify(h),
                None => Outcome::Unreachable(format!("reading the answer: {e}")),
            };
        }
    };
    match serde_json::from_slice::<WatchAnswer>(&body) {
        Ok(a) if a.epoch != target.epoch => Outcome::Unreachable(format!(
            "an answer about epoch {} to a watch of epoch {}",
            a.epoch, target.epoch
        )),
        Ok(a) => match a.state {
            WatchState::Held => Outcome::Held,
            WatchState::Released => Outcome::Released,
            WatchState::NotHolder => Outcome::NotHolder,
        },
        Err(e) => Outcome::Unreachable(format!("not a watch answer: {e}")),
    }
}

/// Watch whichever leader `targets` names, for as long as the receiver lives, and send an
/// event whenever the lease should be read now. Without a target (this replica leads, or the
/// leader advertises no address) it waits.
pub async fn run_watcher(
    mut targets: watch::Receiver<Option<WatchTarget>>,
    events: mpsc::Sender<WatchEvent>,
    metrics: Metrics,
) {
    let mut backoff = MIN_BACKOFF;
    let mut last: Option<WatchTarget> = None;
    let mut warned = false;
    loop {
        let current = targets.borrow_and_update().clone();
        let Some(target) = current else {
            if targets.changed().await.is_err() {
                return;
            }
            continue;
        };
        if last.as_ref() != Some(&target) {
            backoff = MIN_BACKOFF;
            warned = false;
            last = Some(target.clone());
        }
        let started = tokio::time::Instant::now();
        metrics.lease_watch_open.set(1);
        let outcome = tokio::select! {
            o = watch_once(&target) => Some(o),
            changed = targets.changed() => {
                if changed.is_err() {
                    metrics.lease_watch_open.set(0);
                    return;
                }
                None
            }
        };
        metrics.lease_watch_open.set(0);
        // The lease moved on (read by the lease loop): watch the new holder.
        let Some(outcome) = outcome else { continue };
        metrics
            .lease_watches
            .with_label_values(&[outcome.label()])
            .inc();
        let pause = match &outcome {
            Outcome::Held if started.elapsed() >= LONG_WATCH => {
                backoff = MIN_BACKOFF;
                Duration::ZERO
            }
            _ => {
                let p = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                p
            }
        };
        match &outcome {
            Outcome::Unreachable(why) if !warned => {
                warned = true;
                tracing::warn!(holder = %target.holder, epoch = target.epoch, addr = %target.addr, reason = %why, "cannot watch the leader; reading the lease when it would expire instead");
            }
            Outcome::Unreachable(why) => {
                tracing::debug!(holder = %target.holder, epoch = target.epoch, reason = %why, "cannot watch the leader");
            }
            o if o.reads_lease() => {
                tracing::info!(holder = %target.holder, epoch = target.epoch, outcome = o.label(), "the leader's watch answered: reading the lease now");
                // Full: a read is already due, which is all an event asks for.
                let _ = events.try_send(WatchEvent {
                    target: target.clone(),
                    outcome: outcome.clone(),
                });
            }
            _ => {}
        }
        if !pause.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                changed = targets.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn target(addr: std::net::SocketAddr, epoch: u64) -> WatchTarget {
        WatchTarget {
            addr,
            holder: "leader".into(),
            epoch,
        }
    }

    /// A server that answers one connection with `reply` (raw bytes), after reading the head.
    async fn one_reply(reply: Vec<u8>) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                // The whole head: unread bytes would make the close a reset.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            }
        });
        addr
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn answers_map_to_outcomes() {
        for (body, want) in [
            (r#"{"epoch":7,"state":"held"}"#, Outcome::Held),
            (r#"{"epoch":7,"state":"released"}"#, Outcome::Released),
            (r#"{"epoch":7,"state":"not_holder"}"#, Outcome::NotHolder),
        ] {
            let addr = one_reply(http("200 OK", body)).await;
            assert_eq!(watch_once(&target(addr, 7)).await, want, "{body}");
        }
    }

    #[tokio::test]
    async fn hostile_or_broken_answers_say_nothing_about_the_holder() {
        let huge = format!(
            r#"{{"epoch":7,"state":"released","pad":"{}"}}"#,
            "x".repeat(4 * MAX_ANSWER_BYTES)
        );
        let cases: Vec<Vec<u8>> = vec![
            // Another epoch's release.
            http("200 OK", r#"{"epoch":6,"state":"released"}"#),
            // Not JSON, wrong shapes, unknown states, negative and huge numbers.
            http("200 OK", "released"),
            http("200 OK", r#"{"epoch":"7","state":"released"}"#),
            http("200 OK", r#"{"epoch":7,"state":"gone"}"#),
            http("200 OK", r#"{"epoch":-1,"state":"released"}"#),
            http("200 OK", r#"{"epoch":1e400,"state":"released"}"#),
            http(
                "200 OK",
                r#"{"epoch":99999999999999999999999,"state":"released"}"#,
            ),
            // Too large to read.
            http("200 OK", &huge),
            // Errors and redirects.
            http(
                "500 Internal Server Error",
                r#"{"epoch":7,"state":"released"}"#,
            ),
            http("302 Found", ""),
            // Not HTTP at all, and a head past the buffer.
            b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
            format!("HTTP/1.1 200 OK\r\nx: {}\r\n\r\n", "y".repeat(20_000)).into_bytes(),
            // A body longer than it says.
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{\"epoch\":7,\"state\":\"released\"}"
                .to_vec(),
        ];
        for reply in cases {
            let addr = one_reply(reply.clone()).await;
            let o = watch_once(&target(addr, 7)).await;
            assert!(
                matches!(o, Outcome::Unreachable(_)),
                "{:?} gave {o:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(80)])
            );
        }
    }

    #[tokio::test]
    async fn a_refused_or_dropped_connection_means_the_holder_is_gone() {
        // Nobody listens on a port just freed.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(matches!(
            watch_once(&target(addr, 1)).await,
            Outcome::Gone(_)
        ));
        // Accepted, read, then closed without an answer (a process killed mid-watch).
        let addr = one_reply(Vec::new()).await;
        assert!(matches!(
            watch_once(&target(addr, 1)).await,
            Outcome::Gone(_)
        ));
        // Half an answer, then closed.
        let addr = one_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n{\"ep".to_vec()).await;
        assert!(matches!(
            watch_once(&target(addr, 1)).await,
            Outcome::Gone(_)
        ));
    }

    #[tokio::test]
    async fn the_watcher_sends_an_event_for_a_gone_holder_and_backs_off() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let (tx, rx) = watch::channel(Some(target(addr, 3)));
        let (etx, mut erx) = mpsc::channel(1);
        let metrics = Metrics::new("us-east-1");
        let task = tokio::spawn(run_watcher(rx, etx, metrics.clone()));
        let ev = tokio::time::timeout(Duration::from_secs(10), erx.recv())
            .await
            .expect("an event")
            .expect("the watcher lives");
        assert_eq!(ev.target.epoch, 3);
        assert!(matches!(ev.outcome, Outcome::Gone(_)));
        // Backing off: no second event within the first pause.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), erx.recv())
                .await
                .is_err()
        );
        // No target: the watcher waits; dropping the sender ends it.
        tx.send_replace(None);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the watcher ends with its targets")
            .unwrap();
        assert!(metrics.render().contains(
            "mrgc_autoscaler_lease_watches_total{outcome=\"gone\",region=\"us-east-1\"} 1"
        ));
    }
}
